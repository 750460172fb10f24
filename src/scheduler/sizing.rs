//! How Fargate sizes a pod (docs/eks-behaviour.md §9): the larger of the biggest init-container
//! request and the sum of the long-running containers' requests, plus 256 MB of memory for the
//! Kubernetes components, rounded up to the first vCPU/memory combination of the documented table
//! that holds both. Ephemeral storage by the same rule of requests: 20 GiB by default, the request
//! plus 10 % plus 5 GiB above that, at most 175 GiB asked ([`storage_gib`]). Pure: quantities in, a
//! [`Size`] or a refusal out.

use crate::decision::pod::{Container, Pod, Quantity};
use std::fmt;

/// Memory Fargate adds to every pod for kubelet, kube-proxy and containerd, in MiB.
pub const OVERHEAD_MIB: u64 = 256;

/// The largest combination (16 vCPU, 120 GB).
pub const MAX: Size = Size {
    millicpu: 16_000,
    memory_mib: 120 * 1024,
};

/// A Fargate vCPU/memory combination.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Size {
    pub millicpu: u64,
    pub memory_mib: u64,
}

/// The text of the `CapacityProvisioned` annotation: `0.25vCPU 0.5GB`, `2vCPU 9GB`.
impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}vCPU {}GB",
            trimmed(self.millicpu, 1000),
            trimmed(self.memory_mib, 1024)
        )
    }
}

/// `value / unit` without trailing zeros (`250/1000` → `0.25`, `9216/1024` → `9`).
fn trimmed(value: u64, unit: u64) -> String {
    let whole = value / unit;
    let rest = value % unit;
    if rest == 0 {
        return whole.to_string();
    }
    let fraction = format!("{:.3}", rest as f64 / unit as f64);
    format!(
        "{whole}{}",
        fraction.trim_start_matches('0').trim_end_matches('0')
    )
}

/// The documented combinations, smallest vCPU first, memory ascending within each.
pub fn table() -> Vec<Size> {
    let gib = |g: u64| g * 1024;
    let mut sizes = Vec::new();
    let mut band = |millicpu: u64, memory: &mut dyn Iterator<Item = u64>| {
        for memory_mib in memory {
            sizes.push(Size {
                millicpu,
                memory_mib,
            });
        }
    };
    band(250, &mut [512, gib(1), gib(2)].into_iter());
    band(500, &mut (1..=4).map(gib));
    band(1000, &mut (2..=8).map(gib));
    band(2000, &mut (4..=16).map(gib));
    band(4000, &mut (8..=30).map(gib));
    band(8000, &mut (16..=60).step_by(4).map(gib));
    band(16000, &mut (32..=120).step_by(8).map(gib));
    sizes
}

/// What the pod's containers ask for, before the overhead.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Request {
    pub millicpu: u64,
    pub memory_mib: u64,
    pub storage_bytes: u64,
}

impl Request {
    /// Saturating: quantities the apiserver accepts can sum past `u64` (two containers of
    /// `cpu: 1e16`), and such a pod is simply too large.
    fn add(&mut self, other: Request) {
        self.millicpu = self.millicpu.saturating_add(other.millicpu);
        self.memory_mib = self.memory_mib.saturating_add(other.memory_mib);
        self.storage_bytes = self.storage_bytes.saturating_add(other.storage_bytes);
    }

    fn max(self, other: Request) -> Request {
        Request {
            millicpu: self.millicpu.max(other.millicpu),
            memory_mib: self.memory_mib.max(other.memory_mib),
            storage_bytes: self.storage_bytes.max(other.storage_bytes),
        }
    }
}

const GIB: u64 = 1 << 30;
/// Ephemeral storage every Fargate pod gets, in GiB.
pub const STORAGE_DEFAULT_GIB: u64 = 20;
/// The most ephemeral storage a pod's containers may ask for, in GiB.
pub const STORAGE_MAX_GIB: u64 = 175;
/// Storage Fargate adds to what is asked: 10 % for the file system, 5 GiB for the system.
pub const STORAGE_SYSTEM_GIB: u64 = 5;
/// [D] The refusal of a pod asking for more than [`STORAGE_MAX_GIB`]: no capture shows EKS's.
pub const STORAGE_TOO_LARGE_MESSAGE: &str =
    "Your pod's ephemeral-storage requirements exceed the max Fargate configuration";

/// Why a pod cannot be sized.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SizingError {
    /// A request that does not parse as a Kubernetes quantity.
    Quantity { container: String, value: String },
    /// More than the largest combination (EKS: `POD_CPU_MEM_EXCEEDS_MAX_FARGATE_SIZE`).
    TooLarge(Request),
    /// More ephemeral storage asked than [`STORAGE_MAX_GIB`], in bytes.
    StorageTooLarge(u64),
}

/// EKS's reason and message for a pod over the largest size (docs/eks-behaviour.md §9).
pub const TOO_LARGE_REASON: &str = "POD_CPU_MEM_EXCEEDS_MAX_FARGATE_SIZE";
pub const TOO_LARGE_MESSAGE: &str =
    "Your pod's cpu/memory requirements exceed the max Fargate configuration";

impl fmt::Display for SizingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SizingError::Quantity { container, value } => write!(
                f,
                "container {container}: '{value}' is not a Kubernetes quantity"
            ),
            SizingError::TooLarge(_) => f.write_str(TOO_LARGE_MESSAGE),
            SizingError::StorageTooLarge(_) => f.write_str(STORAGE_TOO_LARGE_MESSAGE),
        }
    }
}

/// One container's request of `resource`: `requests`, else `limits` (the apiserver copies a
/// limit into a missing request; manifests read by `explain` have not been through it).
fn container_request<'a>(c: &'a Container, resource: &str) -> Option<&'a Quantity> {
    c.resources
        .requests
        .get(resource)
        .or_else(|| c.resources.limits.get(resource))
}

fn container(c: &Container) -> Result<Request, SizingError> {
    let bad = |q: &Quantity| SizingError::Quantity {
        container: c.name.clone(),
        value: q.0.clone(),
    };
    let millicpu = match container_request(c, "cpu") {
        Some(q) => millicores(&q.0).ok_or_else(|| bad(q))?,
        None => 0,
    };
    let memory_mib = match container_request(c, "memory") {
        Some(q) => bytes(&q.0).ok_or_else(|| bad(q))?.div_ceil(1024 * 1024),
        None => 0,
    };
    let storage_bytes = match container_request(c, "ephemeral-storage") {
        Some(q) => bytes(&q.0).ok_or_else(|| bad(q))?,
        None => 0,
    };
    Ok(Request {
        millicpu,
        memory_mib,
        storage_bytes,
    })
}

/// The pod's request: per resource, the larger of the biggest init container and the sum of the
/// long-running ones (sidecars, init containers with `restartPolicy: Always`, run as long as the
/// pod, so they are summed as Kubernetes does).
pub fn request(pod: &Pod) -> Result<Request, SizingError> {
    let mut sum = Request::default();
    let mut init = Request::default();
    for c in &pod.spec.init_containers {
        let r = container(c)?;
        if c.restart_policy.as_deref() == Some("Always") {
            sum.add(r);
        } else {
            init = init.max(r);
        }
    }
    for c in &pod.spec.containers {
        sum.add(container(c)?);
    }
    Ok(sum.max(init))
}

/// The ephemeral storage Fargate provisions for `pod`, in GiB: [`STORAGE_DEFAULT_GIB`], or what is
/// asked plus 10 % plus [`STORAGE_SYSTEM_GIB`] when that is more (100 GiB asked: 115 GiB), rounded
/// up to a whole GiB; refused when more than [`STORAGE_MAX_GIB`] is asked (docs/eks-behaviour.md §9).
pub fn storage_gib(pod: &Pod) -> Result<u64, SizingError> {
    storage_for(request(pod)?.storage_bytes)
}

fn storage_for(asked: u64) -> Result<u64, SizingError> {
    if asked > STORAGE_MAX_GIB * GIB {
        return Err(SizingError::StorageTooLarge(asked));
    }
    let provisioned = asked + asked.div_ceil(10) + STORAGE_SYSTEM_GIB * GIB;
    Ok(provisioned.div_ceil(GIB).max(STORAGE_DEFAULT_GIB))
}

/// The combination Fargate provisions for `pod`.
pub fn size(pod: &Pod) -> Result<Size, SizingError> {
    size_for(request(pod)?)
}

/// What Fargate provisions for `pod`: its combination and its ephemeral storage in GiB, from one
/// reading of its requests.
pub fn provision(pod: &Pod) -> Result<(Size, u64), SizingError> {
    let wanted = request(pod)?;
    Ok((size_for(wanted)?, storage_for(wanted.storage_bytes)?))
}

fn size_for(wanted: Request) -> Result<Size, SizingError> {
    let memory_mib = wanted.memory_mib.saturating_add(OVERHEAD_MIB);
    table()
        .into_iter()
        .find(|s| s.millicpu >= wanted.millicpu && s.memory_mib >= memory_mib)
        .ok_or(SizingError::TooLarge(wanted))
}

/// CPU quantity in millicores, rounded up (`250m`, `0.5`, `2`, `1e3m`, `100u`, `1k`).
pub fn millicores(text: &str) -> Option<u64> {
    scaled(text, -3)
}

/// Memory quantity in bytes, rounded up (`512Mi`, `1G`, `1.5Gi`, `128974848`, `129e6`).
pub fn bytes(text: &str) -> Option<u64> {
    scaled(text, 0)
}

/// How a quantity's suffix scales its number: by 2^n or by 10^n.
#[derive(Clone, Copy)]
enum Scale {
    Binary(i32),
    Decimal(i32),
}

/// Every suffix of a Kubernetes quantity (the apiserver writes `1000` CPUs as `1k`, `0.0001` as `100u`).
const SUFFIXES: &[(&str, Scale)] = &[
    ("Ki", Scale::Binary(10)),
    ("Mi", Scale::Binary(20)),
    ("Gi", Scale::Binary(30)),
    ("Ti", Scale::Binary(40)),
    ("Pi", Scale::Binary(50)),
    ("Ei", Scale::Binary(60)),
    ("n", Scale::Decimal(-9)),
    ("u", Scale::Decimal(-6)),
    ("m", Scale::Decimal(-3)),
    ("k", Scale::Decimal(3)),
    ("M", Scale::Decimal(6)),
    ("G", Scale::Decimal(9)),
    ("T", Scale::Decimal(12)),
    ("P", Scale::Decimal(15)),
    ("E", Scale::Decimal(18)),
];

/// A quantity in units of 10^`unit` (0: cores or bytes, -3: millicores), rounded up. Powers of ten
/// below one divide rather than multiply, so `250m` is exactly 250 millicores, not 250.00000000000003.
fn scaled(text: &str, unit: i32) -> Option<u64> {
    let text = text.trim();
    let (number, scale) = SUFFIXES
        .iter()
        .find_map(|(suffix, scale)| {
            let number = text.strip_suffix(suffix)?;
            decimal(number).map(|_| (number, *scale))
        })
        .unwrap_or((text, Scale::Decimal(0)));
    let mut value = decimal(number)?;
    let ten = |value: f64, power: i32| {
        if power >= 0 {
            value * 10f64.powi(power)
        } else {
            value / 10f64.powi(-power)
        }
    };
    value = match scale {
        Scale::Binary(n) => ten(value * 2f64.powi(n), -unit),
        Scale::Decimal(p) => ten(value, p - unit),
    };
    let value = value.ceil();
    (value.is_finite() && value < u64::MAX as f64).then_some(value as u64)
}

/// A non-negative decimal, with an optional exponent (`1.5`, `1e3`) and, as Kubernetes' quantity
/// grammar allows, a leading `+` (`+1`: the apiserver stores `1`, a manifest given to `explain` may
/// still say `+1`); nothing else. A leading `-` is refused: no request or limit is negative.
fn decimal(text: &str) -> Option<f64> {
    let text = text.strip_prefix('+').unwrap_or(text);
    let ok = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-'))
        && text.starts_with(|c: char| c.is_ascii_digit() || c == '.');
    let value: f64 = text.parse().ok().filter(|_| ok)?;
    (value.is_finite() && (0.0..1e18).contains(&value)).then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {}, "spec": spec})).unwrap()
    }

    fn c(cpu: Option<&str>, memory: Option<&str>) -> serde_json::Value {
        let mut requests = serde_json::Map::new();
        if let Some(cpu) = cpu {
            requests.insert("cpu".into(), json!(cpu));
        }
        if let Some(memory) = memory {
            requests.insert("memory".into(), json!(memory));
        }
        json!({"name": "c", "resources": {"requests": requests}})
    }

    #[test]
    fn the_table_is_the_documented_one() {
        let t = table();
        assert_eq!(
            t.first().map(ToString::to_string).as_deref(),
            Some("0.25vCPU 0.5GB")
        );
        assert_eq!(t.last().copied(), Some(MAX));
        let count = |cpu: u64| t.iter().filter(|s| s.millicpu == cpu).count();
        assert_eq!(
            [250, 500, 1000, 2000, 4000, 8000, 16000].map(count),
            [3, 4, 7, 13, 23, 12, 12]
        );
        assert!(t.windows(2).all(|w| w[0] < w[1]), "sorted, no duplicates");
    }

    #[test]
    fn sizing_cases() {
        // (containers, init containers, expected) — expected is the annotation or an error.
        let cases: Vec<(Vec<serde_json::Value>, Vec<serde_json::Value>, &str)> = vec![
            // No requests: the smallest.
            (vec![c(None, None)], vec![], "0.25vCPU 0.5GB"),
            // 256 MiB + 256: still 0.5 GB.
            (
                vec![c(Some("250m"), Some("256Mi"))],
                vec![],
                "0.25vCPU 0.5GB",
            ),
            // One MiB more crosses to 1 GB.
            (vec![c(Some("250m"), Some("257Mi"))], vec![], "0.25vCPU 1GB"),
            // Band edges of 0.25 vCPU: 2 GB fits, beyond goes to 0.5 vCPU.
            (
                vec![c(Some("0.25"), Some("1792Mi"))],
                vec![],
                "0.25vCPU 2GB",
            ),
            (vec![c(Some("0.25"), Some("1793Mi"))], vec![], "0.5vCPU 3GB"),
            // CPU just over a band.
            (vec![c(Some("251m"), None)], vec![], "0.5vCPU 1GB"),
            (vec![c(Some("1001m"), Some("1Gi"))], vec![], "2vCPU 4GB"),
            // The documented example: 1 vCPU and 8 GB → 2 vCPU 9 GB.
            (vec![c(Some("1"), Some("8Gi"))], vec![], "2vCPU 9GB"),
            // Several containers are summed.
            (
                vec![c(Some("500m"), Some("1Gi")), c(Some("500m"), Some("1Gi"))],
                vec![],
                "1vCPU 3GB",
            ),
            // A larger init container wins over the sum...
            (
                vec![c(Some("250m"), Some("128Mi"))],
                vec![c(Some("2"), Some("2Gi"))],
                "2vCPU 4GB",
            ),
            // ...per resource: CPU from the containers, memory from the init container.
            (
                vec![c(Some("1"), Some("128Mi")), c(Some("1"), Some("128Mi"))],
                vec![c(Some("500m"), Some("6Gi"))],
                "2vCPU 7GB",
            ),
            // 4 vCPU band in 1 GB steps up to 30; 8 vCPU in 4 GB steps.
            (vec![c(Some("4"), Some("29Gi"))], vec![], "4vCPU 30GB"),
            (vec![c(Some("4"), Some("30Gi"))], vec![], "8vCPU 32GB"),
            (vec![c(Some("8"), Some("59Gi"))], vec![], "8vCPU 60GB"),
            // 16 vCPU in 8 GB steps, up to 120.
            (vec![c(Some("16"), Some("33Gi"))], vec![], "16vCPU 40GB"),
            (vec![c(Some("16"), Some("119Gi"))], vec![], "16vCPU 120GB"),
            // Decimal units: 1G is less than 1Gi.
            (vec![c(None, Some("1G"))], vec![], "0.25vCPU 2GB"),
            // Too large: CPU, then memory with the overhead.
            (vec![c(Some("17"), None)], vec![], "too large"),
            (vec![c(Some("16"), Some("120Gi"))], vec![], "too large"),
            // A quantity that is not one.
            (vec![c(Some("lots"), None)], vec![], "bad quantity"),
            // Sums past u64, no overflow: 1e19 millicores twice is too large; 21 × 9e17 bytes
            // of storage (size() does not judge storage) sizes as nothing asked.
            (
                vec![c(Some("1e16"), None), c(Some("1e16"), None)],
                vec![],
                "too large",
            ),
            (
                vec![
                    json!({"name": "c", "resources": {"requests": {"ephemeral-storage": "9e17"}}});
                    21
                ],
                vec![],
                "0.25vCPU 0.5GB",
            ),
        ];
        for (containers, init, expected) in cases {
            let p = pod(json!({"containers": containers, "initContainers": init}));
            let got = match size(&p) {
                Ok(s) => s.to_string(),
                Err(SizingError::TooLarge(_)) => "too large".into(),
                Err(SizingError::Quantity { .. }) => "bad quantity".into(),
                Err(SizingError::StorageTooLarge(_)) => unreachable!("size() reads no storage"),
            };
            assert_eq!(got, expected, "containers {containers:?} init {init:?}");
        }
    }

    /// Ephemeral storage (docs/eks-behaviour.md §9): 20 GiB by default; what is asked plus 10 % plus
    /// 5 GiB above that (AWS's example: two containers of 50 GiB get 115 GiB); at most 175 GiB asked.
    #[test]
    fn ephemeral_storage_table() {
        let s = |q: &str| json!({"name": "c", "resources": {"requests": {"ephemeral-storage": q}}});
        let limit =
            |q: &str| json!({"name": "l", "resources": {"limits": {"ephemeral-storage": q}}});
        let sidecar = |q: &str| json!({"name": "s", "restartPolicy": "Always", "resources": {"requests": {"ephemeral-storage": q}}});
        let none = json!({"name": "n"});
        let cases: Vec<(Vec<serde_json::Value>, Vec<serde_json::Value>, &str)> = vec![
            (vec![none.clone()], vec![], "20"),
            // Up to 13.63 GiB asked, the default holds it.
            (vec![s("13Gi")], vec![], "20"),
            (vec![s("14Gi")], vec![], "21"),
            (vec![s("50Gi"), s("50Gi")], vec![], "115"),
            (vec![s("100Gi")], vec![], "115"),
            // Decimal units, rounded up to a whole GiB: 100 GB is 93.13 GiB.
            (vec![s("100G")], vec![], "108"),
            // A limit stands in for a missing request.
            (vec![limit("30Gi")], vec![], "38"),
            // Init containers: the largest one, against the sum of the others; sidecars are summed.
            (vec![s("10Gi")], vec![s("40Gi")], "49"),
            (vec![s("30Gi")], vec![s("20Gi"), s("25Gi")], "38"),
            (vec![s("30Gi")], vec![sidecar("20Gi")], "60"),
            // The most that may be asked, and one byte more.
            (vec![s("175Gi")], vec![], "198"),
            (vec![s("175Gi"), s("1")], vec![], "too large"),
            (vec![s("100Gi"), s("76Gi")], vec![], "too large"),
            (vec![s("lots")], vec![], "bad quantity"),
        ];
        for (containers, init, expected) in cases {
            let p = pod(json!({"containers": containers, "initContainers": init}));
            let got = match storage_gib(&p) {
                Ok(gib) => gib.to_string(),
                Err(SizingError::StorageTooLarge(_)) => "too large".into(),
                Err(SizingError::Quantity { .. }) => "bad quantity".into(),
                Err(SizingError::TooLarge(_)) => unreachable!("storage_gib() reads no size"),
            };
            assert_eq!(got, expected, "containers {containers:?} init {init:?}");
        }
    }

    #[test]
    fn limits_stand_in_for_missing_requests_and_sidecars_are_summed() {
        let p = pod(json!({
            "initContainers": [{"name": "proxy", "restartPolicy": "Always",
                                "resources": {"requests": {"cpu": "1", "memory": "1Gi"}}}],
            "containers": [{"name": "app", "resources": {"limits": {"cpu": 1, "memory": "1Gi"}}}]
        }));
        assert_eq!(
            request(&p).unwrap(),
            Request {
                millicpu: 2000,
                memory_mib: 2048,
                storage_bytes: 0,
            }
        );
        assert_eq!(size(&p).unwrap().to_string(), "2vCPU 4GB");
    }

    #[test]
    fn quantities() {
        assert_eq!(millicores("250m"), Some(250));
        assert_eq!(millicores("0.5"), Some(500));
        assert_eq!(millicores("2"), Some(2000));
        assert_eq!(millicores("0.0001"), Some(1));
        assert_eq!(millicores("-1"), None);
        assert_eq!(millicores("+1"), Some(1000));
        assert_eq!(bytes("+512Mi"), Some(512 * 1024 * 1024));
        assert_eq!(millicores("+-1"), None);
        assert_eq!(millicores("++1"), None);
        assert_eq!(millicores("+"), None);
        assert_eq!(millicores("1x"), None);
        assert_eq!(millicores(""), None);
        assert_eq!(bytes("1Ki"), Some(1024));
        assert_eq!(bytes("1.5Gi"), Some(1536 * 1024 * 1024));
        assert_eq!(bytes("129e6"), Some(129_000_000));
        assert_eq!(bytes("1M"), Some(1_000_000));
        assert_eq!(bytes("1Mi"), Some(1_048_576));
        assert_eq!(bytes("Mi"), None);
        assert_eq!(bytes("1e30"), None);
    }

    /// Every suffix, in the forms the apiserver writes back (it canonicalises `1000` CPUs to `1k`
    /// and `0.0001` to `100u`), and no rounding error on exact values.
    #[test]
    fn every_quantity_suffix() {
        let cpu: &[(&str, Option<u64>)] = &[
            ("1k", Some(1_000_000)),
            ("2M", Some(2_000_000_000)),
            ("100u", Some(1)),
            ("1500u", Some(2)),
            ("3000u", Some(3)),
            ("500000n", Some(1)),
            ("250m", Some(250)),
            ("1e3m", Some(1000)),
            ("0.1", Some(100)),
            ("1.001", Some(1001)),
            ("1Ki", Some(1_024_000)),
            ("1E", None),
            ("1x", None),
            ("k", None),
            ("-1k", None),
        ];
        for (text, want) in cpu {
            assert_eq!(millicores(text), *want, "millicores({text:?})");
        }
        let memory: &[(&str, Option<u64>)] = &[
            ("4000Gi", Some(4000 << 30)),
            ("1Ti", Some(1 << 40)),
            ("1Pi", Some(1 << 50)),
            ("2Ei", Some(2 << 60)),
            ("1E", Some(1_000_000_000_000_000_000)),
            ("1E3", Some(1000)),
            ("1k", Some(1000)),
            ("128974848", Some(128_974_848)),
            ("129e6", Some(129_000_000)),
            ("500m", Some(1)),
            ("16Ei", None),
            ("1e3Mi", Some(1000 << 20)),
        ];
        for (text, want) in memory {
            assert_eq!(bytes(text), *want, "bytes({text:?})");
        }
    }
}

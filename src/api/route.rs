//! Routing: which EKS operation a method and path name, with the path parameters decoded.

use http::Method;

/// One operation, with its decoded path parameters.
/// The EKS operations served (metrics labels).
pub const OPERATIONS: [&str; 7] = [
    "CreateFargateProfile",
    "ListFargateProfiles",
    "DescribeFargateProfile",
    "DeleteFargateProfile",
    "TagResource",
    "UntagResource",
    "ListTagsForResource",
];

/// Where failure injection is set (docs/eks-api.md "Failure injection").
pub const FAULT_INJECTION_PATH: &str = "/fault-injection";

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Route {
    Create {
        cluster: String,
    },
    List {
        cluster: String,
    },
    Describe {
        cluster: String,
        name: String,
    },
    Delete {
        cluster: String,
        name: String,
    },
    Tag {
        arn: String,
    },
    Untag {
        arn: String,
    },
    ListTags {
        arn: String,
    },
    /// `GET`/`PUT`/`DELETE /fault-injection` (not EKS's; only with `--fault-injection`).
    Faults {
        method: Method,
    },
    Unknown,
    /// A path segment that is not valid percent-encoded UTF-8.
    BadEncoding(&'static str),
}

pub(crate) fn decode(segment: &str) -> Option<String> {
    percent_encoding::percent_decode_str(segment)
        .decode_utf8()
        .ok()
        .map(|s| s.into_owned())
}

impl Route {
    /// Route on the raw path: split on `/` first, then decode each segment (an encoded `%2F` in a
    /// name stays inside its segment).
    pub fn of(method: &Method, path: &str) -> Route {
        if path == FAULT_INJECTION_PATH {
            return Route::Faults {
                method: method.clone(),
            };
        }
        if let Some(arn) = path.strip_prefix("/tags/").filter(|a| !a.is_empty()) {
            let op = match *method {
                Method::POST => "TagResource",
                Method::DELETE => "UntagResource",
                Method::GET => "ListTagsForResource",
                _ => return Route::Unknown,
            };
            let Some(arn) = decode(arn) else {
                return Route::BadEncoding(op);
            };
            return match op {
                "TagResource" => Route::Tag { arn },
                "UntagResource" => Route::Untag { arn },
                _ => Route::ListTags { arn },
            };
        }
        let segments: Vec<&str> = match path.strip_prefix('/') {
            Some(rest) => rest.split('/').collect(),
            None => return Route::Unknown,
        };
        match (method, segments.as_slice()) {
            (&Method::POST | &Method::GET, ["clusters", cluster, "fargate-profiles"])
                if !cluster.is_empty() =>
            {
                let create = *method == Method::POST;
                let op = if create {
                    "CreateFargateProfile"
                } else {
                    "ListFargateProfiles"
                };
                match decode(cluster) {
                    Some(cluster) if create => Route::Create { cluster },
                    Some(cluster) => Route::List { cluster },
                    None => Route::BadEncoding(op),
                }
            }
            (&Method::GET | &Method::DELETE, ["clusters", cluster, "fargate-profiles", name])
                if !cluster.is_empty() && !name.is_empty() =>
            {
                let describe = *method == Method::GET;
                let op = if describe {
                    "DescribeFargateProfile"
                } else {
                    "DeleteFargateProfile"
                };
                match (decode(cluster), decode(name)) {
                    (Some(cluster), Some(name)) if describe => Route::Describe { cluster, name },
                    (Some(cluster), Some(name)) => Route::Delete { cluster, name },
                    _ => Route::BadEncoding(op),
                }
            }
            _ => Route::Unknown,
        }
    }

    /// The operation name, also the metrics label.
    pub fn operation(&self) -> &'static str {
        match self {
            Route::Create { .. } => "CreateFargateProfile",
            Route::List { .. } => "ListFargateProfiles",
            Route::Describe { .. } => "DescribeFargateProfile",
            Route::Delete { .. } => "DeleteFargateProfile",
            Route::Tag { .. } => "TagResource",
            Route::Untag { .. } => "UntagResource",
            Route::ListTags { .. } => "ListTagsForResource",
            Route::Faults { .. } => "FaultInjection",
            Route::Unknown => "Unknown",
            Route::BadEncoding(op) => op,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        let r = |m: Method, p: &str| Route::of(&m, p);
        assert_eq!(
            r(Method::POST, "/clusters/fargate/fargate-profiles"),
            Route::Create {
                cluster: "fargate".into()
            }
        );
        assert_eq!(
            r(Method::GET, "/clusters/a%20b/fargate-profiles/x%2Fy"),
            Route::Describe {
                cluster: "a b".into(),
                name: "x/y".into()
            }
        );
        assert_eq!(
            r(Method::GET, "/tags/arn%3Aaws%3Aeks%3Ax"),
            Route::ListTags {
                arn: "arn:aws:eks:x".into()
            }
        );
        assert_eq!(
            r(Method::PUT, "/clusters/f/fargate-profiles"),
            Route::Unknown
        );
        assert_eq!(
            r(Method::GET, "/clusters/f/fargate-profiles/"),
            Route::Unknown
        );
        assert_eq!(r(Method::GET, "/"), Route::Unknown);
        assert_eq!(
            r(Method::GET, "/clusters/f/fargate-profiles/%FF"),
            Route::BadEncoding("DescribeFargateProfile")
        );
    }
}

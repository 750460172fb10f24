//! Pool placement's accounting, kube-scheduler's way (assume/forget): what the pool's nodes hold is
//! known from a watch of the bound pods, plus the pods this scheduler placed that the watch does not
//! show bound yet ("assumed"). A placement is decided and assumed in one short step under a lock;
//! the Binding is then posted without it, and a failed bind forgets the pod. Pure: the caller feeds
//! the watch's events and gives the time.

use super::placement::{PoolNode, choose_pool_node};
use super::sizing::Size;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// An assumed pod the watch never confirms (its Binding was accepted, its events lost) stops
/// counting after this long; a relist of the watch counts it again if it is there.
pub const ASSUMED_TTL: Duration = Duration::from_secs(60);

/// Where a pod sits and what it takes, as the watch shows it (`None`: not bound, or finished).
pub type Placed = Option<(String, Size)>;

#[derive(Debug, Default)]
pub struct PoolIndex {
    /// Bound, unfinished pods as the watch last showed them: UID → (node, size).
    bound: HashMap<String, (String, Size)>,
    /// Pods placed here that the watch does not show bound yet: UID → (node, size, when).
    assumed: HashMap<String, (String, Size, Instant)>,
    /// A list in progress (watch `Init` … `InitDone`).
    listing: Option<HashMap<String, (String, Size)>>,
    listed: bool,
}

impl PoolIndex {
    /// The first complete list is in: placements may be decided.
    pub fn is_listed(&self) -> bool {
        self.listed
    }

    pub fn init(&mut self) {
        self.listing = Some(HashMap::new());
    }

    pub fn init_apply(&mut self, uid: &str, placed: Placed) {
        if let (Some(listing), Some(entry)) = (self.listing.as_mut(), placed) {
            listing.insert(uid.to_owned(), entry);
        }
    }

    /// A complete list replaces what the watch showed; assumed pods it shows bound are confirmed.
    pub fn init_done(&mut self) {
        if let Some(listing) = self.listing.take() {
            self.bound = listing;
            self.listed = true;
            let bound = &self.bound;
            self.assumed.retain(|uid, _| !bound.contains_key(uid));
        }
    }

    pub fn apply(&mut self, uid: &str, placed: Placed) {
        match placed {
            Some(entry) => {
                self.assumed.remove(uid);
                self.bound.insert(uid.to_owned(), entry);
            }
            None => {
                self.bound.remove(uid);
            }
        }
    }

    pub fn delete(&mut self, uid: &str) {
        self.bound.remove(uid);
        self.assumed.remove(uid);
    }

    /// What the pods on `node` take: the bound ones and the assumed ones not shown bound yet.
    pub fn used(&self, node: &str) -> Size {
        let mut used = Size {
            millicpu: 0,
            memory_mib: 0,
        };
        let on_node = self
            .bound
            .values()
            .map(|(n, size)| (n, size))
            .chain(self.assumed.values().map(|(n, size, _)| (n, size)))
            .filter(|(n, _)| n.as_str() == node);
        for (_, size) in on_node {
            used.millicpu = used.millicpu.saturating_add(size.millicpu);
            used.memory_mib = used.memory_mib.saturating_add(size.memory_mib);
        }
        used
    }

    /// Choose a node of `nodes` (their `used` is ignored and recomputed here) for the pod `uid` of
    /// `size`, and assume it there. `None`: no node has room.
    pub fn assume(
        &mut self,
        uid: &str,
        nodes: &[PoolNode],
        size: Size,
        now: Instant,
    ) -> Option<String> {
        self.assumed
            .retain(|_, (_, _, at)| now.saturating_duration_since(*at) < ASSUMED_TTL);
        // A pod tried again after a failed bind that was not forgotten counts once.
        self.assumed.remove(uid);
        let counted: Vec<PoolNode> = nodes
            .iter()
            .map(|n| PoolNode {
                used: self.used(&n.name),
                ..n.clone()
            })
            .collect();
        let node = choose_pool_node(&counted, size)?.name.clone();
        self.assumed
            .insert(uid.to_owned(), (node.clone(), size, now));
        Some(node)
    }

    /// The bind failed: the pod takes no room.
    pub fn forget(&mut self, uid: &str) {
        self.assumed.remove(uid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn size(millicpu: u64, memory_mib: u64) -> Size {
        Size {
            millicpu,
            memory_mib,
        }
    }

    fn node(name: &str, millicpu: u64) -> PoolNode {
        PoolNode {
            name: name.into(),
            allocatable: size(millicpu, 8192),
            used: size(0, 0),
            schedulable: true,
        }
    }

    fn listed(pods: &[(&str, &str, u64)]) -> PoolIndex {
        let mut index = PoolIndex::default();
        index.init();
        for (uid, node, cpu) in pods {
            index.init_apply(uid, Some(((*node).into(), size(*cpu, 512))));
        }
        index.init_done();
        index
    }

    #[test]
    fn assumed_pods_take_room_until_the_watch_shows_them_then_count_once() {
        let t0 = Instant::now();
        let nodes = [node("a", 2000), node("b", 2000)];
        let mut index = listed(&[("x", "a", 1000)]);
        // b has most room; then a and b are even, and a wins ties by name.
        assert_eq!(
            index.assume("p1", &nodes, size(1000, 512), t0).as_deref(),
            Some("b")
        );
        assert_eq!(
            index.assume("p2", &nodes, size(500, 512), t0).as_deref(),
            Some("a")
        );
        assert_eq!(index.used("b"), size(1000, 512));
        assert_eq!(index.used("a"), size(1500, 1024));
        // The watch shows p1 bound: counted once, no longer assumed.
        index.apply("p1", Some(("b".into(), size(1000, 512))));
        assert_eq!(index.used("b"), size(1000, 512));
        // Full: 500 left on a, 1000 on b.
        assert_eq!(index.assume("p3", &nodes, size(1500, 512), t0), None);
        assert_eq!(
            index.assume("p4", &nodes, size(1000, 512), t0).as_deref(),
            Some("b")
        );
        assert_eq!(index.assume("p5", &nodes, size(1000, 512), t0), None);
    }

    #[test]
    fn a_failed_bind_forgets_and_a_retry_counts_once() {
        let t0 = Instant::now();
        let nodes = [node("a", 1000)];
        let mut index = listed(&[]);
        assert!(index.assume("p", &nodes, size(1000, 512), t0).is_some());
        assert_eq!(index.assume("q", &nodes, size(1000, 512), t0), None);
        index.forget("p");
        assert!(index.assume("q", &nodes, size(1000, 512), t0).is_some());
        // q tried again without a forget: it does not count against itself.
        assert!(index.assume("q", &nodes, size(1000, 512), t0).is_some());
        assert_eq!(index.used("a"), size(1000, 512));
    }

    #[test]
    fn finished_deleted_and_expired_pods_free_their_room() {
        let t0 = Instant::now();
        let nodes = [node("a", 1000)];
        let mut index = listed(&[("done", "a", 1000)]);
        assert_eq!(index.assume("p", &nodes, size(100, 1), t0), None);
        index.apply("done", None); // finished
        assert!(index.assume("p", &nodes, size(1000, 1), t0).is_some());
        index.delete("p");
        assert_eq!(index.used("a"), size(0, 0));
        // An assumption the watch never confirms expires.
        assert!(index.assume("lost", &nodes, size(1000, 1), t0).is_some());
        assert_eq!(
            index.assume("next", &nodes, size(1000, 1), t0 + ASSUMED_TTL / 2),
            None
        );
        assert!(
            index
                .assume("next", &nodes, size(1000, 1), t0 + ASSUMED_TTL)
                .is_some()
        );
    }

    #[test]
    fn a_relist_replaces_the_bound_pods_and_confirms_assumed_ones() {
        let t0 = Instant::now();
        let nodes = [node("a", 2000)];
        let mut index = listed(&[("gone", "a", 1000)]);
        assert!(!PoolIndex::default().is_listed());
        assert!(index.is_listed());
        assert!(index.assume("p", &nodes, size(500, 1), t0).is_some());
        index.init();
        index.init_apply("p", Some(("a".into(), size(500, 1))));
        index.init_apply("unbound", None);
        // Until the list is done, the old view stands.
        assert_eq!(index.used("a"), size(1500, 513));
        index.init_done();
        assert_eq!(index.used("a"), size(500, 1));
    }
}

//! A consistent-hash ring (Karger et al., as Envoy's `RING_HASH` and ketama): every
//! endpoint owns `virtual_nodes` points placed by hashing its address, and a key goes to the
//! first point at or after its hash. Points depend only on the endpoint's own address, so
//! adding or removing one endpoint moves only the keys it gains or loses (about 1/n).

use super::rng::hash_bytes;

/// The ring of one endpoint set, built when the set changes.
#[derive(Debug, Default)]
pub(super) struct Ring {
    /// (point, index of the slot in the set), sorted by point.
    points: Box<[(u64, u32)]>,
}

impl Ring {
    /// The ring over `addresses` (in set order) with `virtual_nodes` points each.
    pub(super) fn new<'a>(addresses: impl Iterator<Item = &'a str>, virtual_nodes: u32) -> Self {
        let mut points = Vec::new();
        let mut buf = Vec::new();
        for (index, address) in addresses.enumerate() {
            for replica in 0..virtual_nodes {
                buf.clear();
                buf.extend_from_slice(address.as_bytes());
                buf.push(b'#');
                buf.extend_from_slice(&replica.to_be_bytes());
                points.push((hash_bytes(&buf), index as u32));
            }
        }
        // Ties (astronomically rare) are broken by index so the order is deterministic.
        points.sort_unstable();
        Self {
            points: points.into_boxed_slice(),
        }
    }

    /// The slot that owns `key`, walking clockwise past slots for which `skip` holds; `None`
    /// when the ring is empty or every slot is skipped.
    pub(super) fn lookup(&self, key: u64, skip: impl Fn(usize) -> bool) -> Option<usize> {
        let n = self.points.len();
        if n == 0 {
            return None;
        }
        let start = self.points.partition_point(|&(point, _)| point < key);
        (0..n)
            .map(|i| self.points[(start + i) % n].1 as usize)
            .find(|&index| !skip(index))
    }
}

//! The consistent-hash ring (SPEC S3): which brokers own a host.
//!
//! Each member stands at `vnodes` points of a 32-bit circle; a host's point is the CRC32 of its
//! id; its owners are the first `r` distinct members met walking clockwise from there. Points
//! are mixed with murmur3's finalizer after the CRC (CRC32 is linear: the ids `b-1#0`, `b-1#1`
//! … would otherwise sit in lumps and share the circle unevenly). The same members, vnodes and
//! epoch give the same ring on every broker, whatever the order they are listed in. When a
//! member joins, only the hosts it now owns move (about 1/N of them); when one leaves, only
//! its hosts move.

use std::sync::Arc;

/// Default points per member.
pub const DEFAULT_VNODES: u32 = 50;

/// One version of the ring.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ring {
    epoch: u64,
    vnodes: u32,
    /// Distinct member ids, sorted.
    members: Vec<Arc<str>>,
    /// (point, index into `members`), sorted by point then member.
    points: Vec<(u32, u32)>,
}

/// murmur3's 32-bit finalizer: spreads the CRC's bits over the circle.
fn mix(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

/// A host's point on the circle.
pub fn point(host_id: &str) -> u32 {
    mix(crc32fast::hash(host_id.as_bytes()))
}

impl Ring {
    /// The ring of `members` (duplicates counted once) at `epoch`, `vnodes` points each (at
    /// least 1).
    pub fn new<I, S>(epoch: u64, members: I, vnodes: u32) -> Ring
    where
        I: IntoIterator<Item = S>,
        S: Into<Arc<str>>,
    {
        let mut members: Vec<Arc<str>> = members.into_iter().map(Into::into).collect();
        members.sort();
        members.dedup();
        let vnodes = vnodes.max(1);
        let mut points = Vec::with_capacity(members.len() * vnodes as usize);
        let mut label = String::new();
        for (i, m) in members.iter().enumerate() {
            for v in 0..vnodes {
                label.clear();
                label.push_str(m);
                label.push('#');
                label.push_str(&v.to_string());
                points.push((point(&label), i as u32));
            }
        }
        points.sort_unstable();
        Ring {
            epoch,
            vnodes,
            members,
            points,
        }
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    pub fn vnodes(&self) -> u32 {
        self.vnodes
    }

    /// The members, sorted.
    pub fn members(&self) -> impl Iterator<Item = &str> {
        self.members.iter().map(|m| &**m)
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The first owner of `host_id`; `None` on an empty ring.
    pub fn owner(&self, host_id: &str) -> Option<&str> {
        let n = self.points.len();
        if n == 0 {
            return None;
        }
        let at = self.points.partition_point(|&(p, _)| p < point(host_id)) % n;
        Some(&self.members[self.points[at].1 as usize])
    }

    /// The `r` distinct owners of `host_id`, the first first (fewer if the ring has fewer
    /// members).
    pub fn owners(&self, host_id: &str, r: usize) -> Vec<&str> {
        let n = self.points.len();
        let want = r.min(self.members.len());
        let mut found: Vec<u32> = Vec::with_capacity(want);
        if want == 0 {
            return Vec::new();
        }
        let start = self.points.partition_point(|&(p, _)| p < point(host_id));
        for k in 0..n {
            let (_, m) = self.points[(start + k) % n];
            // R is small (1 to 5): a scan of what is found beats a set.
            if !found.contains(&m) {
                found.push(m);
                if found.len() == want {
                    break;
                }
            }
        }
        found.iter().map(|&m| &*self.members[m as usize]).collect()
    }

    /// Bytes the ring holds (its points and member ids), for sizing.
    pub fn heap_bytes(&self) -> usize {
        self.points.capacity() * std::mem::size_of::<(u32, u32)>()
            + self
                .members
                .iter()
                .map(|m| m.len() + std::mem::size_of::<Arc<str>>())
                .sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    fn brokers(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("broker-{i}")).collect()
    }

    fn hosts(n: usize) -> Vec<String> {
        (0..n)
            .map(|i| format!("node-{i:06}.cluster.local"))
            .collect()
    }

    /// Most hosts on one member over the mean.
    fn max_over_mean(ring: &Ring, hosts: &[String]) -> f64 {
        let mut load: HashMap<&str, usize> = HashMap::new();
        for h in hosts {
            *load.entry(ring.owner(h).unwrap()).or_default() += 1;
        }
        let max = ring
            .members()
            .map(|m| load.get(m).copied().unwrap_or(0))
            .max()
            .unwrap();
        max as f64 * ring.members().count() as f64 / hosts.len() as f64
    }

    #[test]
    fn fifty_vnodes_share_hosts_evenly_across_3_10_and_100_brokers() {
        let hs = hosts(100_000);
        for (n, bound) in [(3, 1.25), (10, 1.35), (100, 1.6)] {
            let ring = Ring::new(1, brokers(n), DEFAULT_VNODES);
            let r = max_over_mean(&ring, &hs);
            println!("{n} brokers × 50 vnodes: max/mean load {r:.3}");
            assert!(r <= bound, "{n} brokers: max/mean {r:.3} > {bound}");
        }
    }

    #[test]
    fn an_empty_ring_owns_nothing_and_a_small_one_gives_what_it_has() {
        let empty = Ring::new(0, Vec::<String>::new(), 50);
        assert!(empty.is_empty() && empty.owner("h").is_none());
        let two = Ring::new(1, ["a", "b", "a"], 0);
        assert_eq!(two.members().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(two.vnodes(), 1);
        let mut o = two.owners("h", 5);
        o.sort();
        assert_eq!(o, ["a", "b"]);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// The same members in any order, the same ring; owners are distinct and the first is
        /// the owner.
        #[test]
        fn the_same_members_give_the_same_ring_and_distinct_owners(
            n in 1usize..20,
            vnodes in 1u32..80,
            seed in any::<u64>(),
            host in "[a-z0-9.-]{1,40}",
            r in 1usize..5,
        ) {
            let mut ids = brokers(n);
            let a = Ring::new(3, ids.clone(), vnodes);
            ids.rotate_left((seed % n as u64) as usize);
            ids.reverse();
            let b = Ring::new(3, ids, vnodes);
            prop_assert_eq!(&a, &b);
            let owners = a.owners(&host, r);
            prop_assert_eq!(owners.len(), r.min(n));
            let mut distinct = owners.clone();
            distinct.sort();
            distinct.dedup();
            prop_assert_eq!(distinct.len(), owners.len());
            prop_assert_eq!(Some(owners[0]), a.owner(&host));
        }

        /// A join moves hosts only to the new member, about 1/(N+1) of them; a leave moves only
        /// the leaver's hosts.
        #[test]
        fn a_join_or_a_leave_moves_only_the_hosts_it_must(n in 2usize..30) {
            let hs = hosts(5_000);
            let before = Ring::new(1, brokers(n), DEFAULT_VNODES);
            let grown = Ring::new(2, brokers(n + 1), DEFAULT_VNODES);
            let new = format!("broker-{n}");
            let mut moved = 0;
            for h in &hs {
                let (was, is) = (before.owner(h).unwrap(), grown.owner(h).unwrap());
                if was != is {
                    prop_assert_eq!(is, new.as_str());
                    moved += 1;
                }
            }
            let share = moved as f64 / hs.len() as f64;
            let fair = 1.0 / (n + 1) as f64;
            prop_assert!(share > fair * 0.4 && share < fair * 2.0, "moved {share:.3}, fair {fair:.3}");
            let gone = "broker-0";
            let shrunk = Ring::new(3, brokers(n).into_iter().filter(|b| b != gone), DEFAULT_VNODES);
            for h in &hs {
                let was = before.owner(h).unwrap();
                if was != gone {
                    prop_assert_eq!(shrunk.owner(h).unwrap(), was);
                }
            }
        }
    }
}

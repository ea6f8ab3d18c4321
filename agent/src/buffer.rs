//! The bounded buffer between the collector and the sender (SPEC S2).
//!
//! Capacity is `capacity` full snapshots, held as a sample budget:
//! `capacity × samples of the largest full snapshot seen`. Each entry keeps its metrics
//! ordered totals first, then details. When a push would exceed the budget, details are
//! stripped from the oldest entries that still carry them (the incoming snapshot, being the
//! newest, is stripped last); only when no entry carries details any more are the oldest whole
//! entries evicted. A hard cap of `8 × capacity` entries bounds the entry count. Every dropped
//! sample and snapshot is counted.
//!
//! The collector never blocks: back-pressure is the sender's bounded in-flight window, and the
//! buffer keeps everything unacknowledged (a cursor marks what was already sent on the
//! current stream; it is reset on reconnect so everything unacked is resent).

use std::collections::VecDeque;

use ringwatch_proto::{Metric, Snapshot};

use crate::collect::Samples;

/// How many entries the buffer may hold per snapshot of capacity (stripped entries are small).
pub const ENTRY_CAP_FACTOR: usize = 8;

/// Counts of dropped (or removed) samples and snapshots.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Dropped {
    /// Detail samples (per core, per disk, per interface).
    pub detail_samples: u64,
    /// Total samples.
    pub total_samples: u64,
    /// Whole snapshots.
    pub snapshots: u64,
}

impl Dropped {
    /// Whether nothing was dropped.
    pub fn is_empty(&self) -> bool {
        *self == Dropped::default()
    }

    fn add(&mut self, other: Dropped) {
        self.detail_samples += other.detail_samples;
        self.total_samples += other.total_samples;
        self.snapshots += other.snapshots;
    }
}

#[derive(Debug)]
struct Entry {
    timestamp_ms: i64,
    /// Totals first, details from `detail_start` on.
    metrics: Vec<Metric>,
    detail_start: usize,
}

impl Entry {
    fn details(&self) -> usize {
        self.metrics.len() - self.detail_start
    }

    fn has_details(&self) -> bool {
        self.details() > 0
    }

    /// Drops the details; returns how many.
    fn strip(&mut self) -> u64 {
        let n = self.details();
        self.metrics.truncate(self.detail_start);
        self.metrics.shrink_to_fit();
        n as u64
    }

    fn as_dropped(&self) -> Dropped {
        Dropped {
            detail_samples: self.details() as u64,
            total_samples: self.detail_start as u64,
            snapshots: 1,
        }
    }
}

/// The bounded snapshot buffer.
#[derive(Debug)]
pub struct Buffer {
    capacity: usize,
    max_entries: usize,
    largest: usize,
    entries: VecDeque<Entry>,
    samples: usize,
    /// `entries[..no_detail_prefix]` carry no details (a scan hint).
    no_detail_prefix: usize,
    /// The newest timestamp handed to the sender on the current stream.
    sent_upto: Option<i64>,
    last_timestamp: Option<i64>,
    dropped: Dropped,
    /// What was shed from snapshots already sent but not yet acknowledged, by timestamp: not a
    /// loss if their batch is acknowledged (the broker has them whole), a loss if it is rejected
    /// or has to be sent again.
    provisional: Vec<(i64, Dropped)>,
}

impl Buffer {
    /// A buffer of `capacity` full snapshots (at least 1).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Buffer {
            capacity,
            max_entries: capacity.saturating_mul(ENTRY_CAP_FACTOR),
            largest: 0,
            entries: VecDeque::new(),
            samples: 0,
            no_detail_prefix: 0,
            sent_upto: None,
            last_timestamp: None,
            dropped: Dropped::default(),
            provisional: Vec::new(),
        }
    }

    /// Snapshots held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the buffer is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Samples held.
    pub fn samples(&self) -> usize {
        self.samples
    }

    /// The sample budget: capacity × the largest full snapshot seen.
    pub fn budget(&self) -> usize {
        self.capacity.saturating_mul(self.largest)
    }

    /// Everything dropped because the buffer was full, since creation.
    pub fn dropped_full(&self) -> Dropped {
        self.dropped
    }

    /// Whether entries exist that were not yet handed out on the current stream.
    pub fn has_unsent(&self) -> bool {
        self.entries
            .back()
            .is_some_and(|e| self.sent_upto.is_none_or(|s| e.timestamp_ms > s))
    }

    /// Adds one collection. Timestamps are made strictly increasing (a clock stepping back
    /// yields `last + 1`). Returns what had to be dropped to make room (reason `buffer_full`).
    pub fn push(&mut self, samples: Samples) -> Dropped {
        let Samples {
            mut timestamp_ms,
            mut totals,
            details,
        } = samples;
        if let Some(last) = self.last_timestamp
            && timestamp_ms <= last
        {
            timestamp_ms = last.saturating_add(1);
        }
        self.last_timestamp = Some(timestamp_ms);
        let detail_start = totals.len();
        totals.extend(details);
        let mut entry = Entry {
            timestamp_ms,
            metrics: totals,
            detail_start,
        };
        self.largest = self.largest.max(entry.metrics.len());
        let budget = self.budget();
        let mut dropped = Dropped::default();

        while self.entries.len() >= self.max_entries {
            match self.evict_oldest() {
                Some((ts, d)) => self.shed(ts, d, &mut dropped),
                None => break,
            }
        }
        while self.samples + entry.metrics.len() > budget {
            if let Some(i) = self.oldest_with_details() {
                let e = &mut self.entries[i];
                let (ts, n) = (e.timestamp_ms, e.strip());
                self.samples -= n as usize;
                let d = Dropped {
                    detail_samples: n,
                    ..Dropped::default()
                };
                self.shed(ts, d, &mut dropped);
            } else if entry.has_details() {
                dropped.detail_samples += entry.strip();
            } else if let Some((ts, d)) = self.evict_oldest() {
                self.shed(ts, d, &mut dropped);
            } else {
                break;
            }
        }
        self.samples += entry.metrics.len();
        self.entries.push_back(entry);
        self.dropped.add(dropped);
        dropped
    }

    fn oldest_with_details(&mut self) -> Option<usize> {
        let found =
            (self.no_detail_prefix..self.entries.len()).find(|&i| self.entries[i].has_details());
        self.no_detail_prefix = found.unwrap_or(self.entries.len());
        found
    }

    /// (timestamp, what it held) of the oldest entry, removed.
    fn evict_oldest(&mut self) -> Option<(i64, Dropped)> {
        let e = self.entries.pop_front()?;
        self.no_detail_prefix = self.no_detail_prefix.saturating_sub(1);
        self.samples -= e.metrics.len();
        Some((e.timestamp_ms, e.as_dropped()))
    }

    /// Data shed from the snapshot at `ts`: a drop now, or, if that snapshot is in flight,
    /// one only if its batch does not land (see `settle`).
    fn shed(&mut self, ts: i64, d: Dropped, dropped: &mut Dropped) {
        if self.sent_upto.is_some_and(|s| ts <= s) {
            self.provisional.push((ts, d));
        } else {
            dropped.add(d);
        }
    }

    /// Settles what was shed from the in-flight snapshots in `first_ms..=last_ms`: nothing was
    /// lost if their batch was `delivered`; otherwise it is a drop now, returned.
    pub fn settle(&mut self, first_ms: i64, last_ms: i64, delivered: bool) -> Dropped {
        let mut lost = Dropped::default();
        self.provisional.retain(|&(ts, d)| {
            let settled = (first_ms..=last_ms).contains(&ts);
            if settled && !delivered {
                lost.add(d);
            }
            !settled
        });
        self.dropped.add(lost);
        lost
    }

    /// Hands out up to `max` snapshots not yet sent on this stream, oldest first.
    pub fn next_batch(&mut self, max: usize, host_id: &str) -> Vec<Snapshot> {
        let start = match self.sent_upto {
            Some(s) => self.entries.partition_point(|e| e.timestamp_ms <= s),
            None => 0,
        };
        let batch: Vec<Snapshot> = self
            .entries
            .range(start..)
            .take(max)
            .map(|e| Snapshot {
                host_id: host_id.to_string(),
                timestamp_ms: e.timestamp_ms,
                metrics: e.metrics.clone(),
            })
            .collect();
        if let Some(last) = batch.last() {
            self.sent_upto = Some(last.timestamp_ms);
        }
        batch
    }

    /// Forgets what was sent: the next batches start again at the oldest entry (reconnect).
    /// What was shed from in-flight snapshots is now lost (they go again as they are); returned.
    pub fn reset_cursor(&mut self) -> Dropped {
        self.sent_upto = None;
        let mut lost = Dropped::default();
        for (_, d) in self.provisional.drain(..) {
            lost.add(d);
        }
        self.dropped.add(lost);
        lost
    }

    /// What the snapshots at these timestamps hold (those still buffered).
    pub fn measure(&self, timestamps: &[i64]) -> Dropped {
        let mut out = Dropped::default();
        for &ts in timestamps {
            let i = self.entries.partition_point(|e| e.timestamp_ms < ts);
            if let Some(e) = self.entries.get(i).filter(|e| e.timestamp_ms == ts) {
                out.add(e.as_dropped());
            }
        }
        out
    }

    /// Removes the entries with `first_ms <= timestamp <= last_ms` (an acknowledged or
    /// rejected batch) and returns what was removed.
    pub fn remove_range(&mut self, first_ms: i64, last_ms: i64) -> Dropped {
        let a = self.entries.partition_point(|e| e.timestamp_ms < first_ms);
        let b = self.entries.partition_point(|e| e.timestamp_ms <= last_ms);
        let mut removed = Dropped::default();
        if a >= b {
            return removed;
        }
        for e in self.entries.drain(a..b) {
            self.samples -= e.metrics.len();
            removed.add(e.as_dropped());
        }
        self.no_detail_prefix = self.no_detail_prefix.min(a);
        removed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringwatch_proto::Unit;

    /// A snapshot with `t` totals and `d` details at time `ts`.
    fn samples(ts: i64, t: usize, d: usize) -> Samples {
        let mut s = Samples {
            timestamp_ms: ts,
            ..Samples::default()
        };
        for i in 0..t {
            s.total(format!("t{i}"), i as f64, Unit::Count);
        }
        for i in 0..d {
            s.detail(format!("d{i}"), i as f64, Unit::Count);
        }
        s
    }

    fn shape(b: &Buffer) -> Vec<(i64, usize)> {
        b.entries
            .iter()
            .map(|e| (e.timestamp_ms, e.metrics.len()))
            .collect()
    }

    #[test]
    fn fits_without_drops() {
        let mut b = Buffer::new(3);
        for ts in 1..=3 {
            assert!(b.push(samples(ts, 2, 3)).is_empty());
        }
        assert_eq!(b.len(), 3);
        assert_eq!(b.samples(), 15);
        assert_eq!(b.budget(), 15);
    }

    #[test]
    fn details_of_oldest_go_first_then_totals() {
        // Capacity 3 snapshots of 2 totals + 3 details = budget 15 samples.
        let mut b = Buffer::new(3);
        for ts in 1..=3 {
            b.push(samples(ts, 2, 3));
        }
        // 4th: strips the details of #1 (15 + 5 - 3 = 17 > 15), then of #2 (14 <= 15).
        let d = b.push(samples(4, 2, 3));
        assert_eq!(
            d,
            Dropped {
                detail_samples: 6,
                total_samples: 0,
                snapshots: 0
            }
        );
        assert_eq!(shape(&b), vec![(1, 2), (2, 2), (3, 5), (4, 5)]);
        // 5th: strips #3 (the oldest with details): 11 + 5 = 16 > 15, then #4: 8 + 5 = 13.
        let d = b.push(samples(5, 2, 3));
        assert_eq!(d.detail_samples, 6);
        assert_eq!(shape(&b), vec![(1, 2), (2, 2), (3, 2), (4, 2), (5, 5)]);
        assert_eq!(b.samples(), 13);
        // 6th: strips #5 (13 - 3 + 5 = 15 fits).
        let d = b.push(samples(6, 2, 3));
        assert_eq!(d.detail_samples, 3);
        assert_eq!(
            shape(&b),
            vec![(1, 2), (2, 2), (3, 2), (4, 2), (5, 2), (6, 5)]
        );
        // 7th: strips #6 (15 - 3 = 12), still 17 > 15: strips the new one itself (14 fits).
        let d = b.push(samples(7, 2, 3));
        assert_eq!(d.detail_samples, 6);
        assert_eq!(d.total_samples, 0);
        assert_eq!(shape(&b).last(), Some(&(7, 2)));
        assert_eq!(b.samples(), 14);
        // 8th (totals only now everywhere): 14 + 5 = 19 > 15, strip new (16 > 15), then evict #1.
        let d = b.push(samples(8, 2, 3));
        assert_eq!(
            d,
            Dropped {
                detail_samples: 3,
                total_samples: 2,
                snapshots: 1
            }
        );
        assert_eq!(b.entries.front().map(|e| e.timestamp_ms), Some(2));
        assert_eq!(b.samples(), 14);
        let total = b.dropped_full();
        assert_eq!(total.detail_samples, 6 + 6 + 3 + 6 + 3);
        assert_eq!(total.total_samples, 2);
        assert_eq!(total.snapshots, 1);
    }

    #[test]
    fn entry_hard_cap_evicts_oldest() {
        let mut b = Buffer::new(1);
        // Totals-only snapshots of size 1 after a first large one: budget = 1 × 10.
        b.push(samples(1, 10, 0));
        b.push(samples(2, 1, 0)); // 10 + 1 > 10: evicts #1 (10 totals).
        assert_eq!(b.len(), 1);
        for ts in 3..=20 {
            b.push(samples(ts, 1, 0));
        }
        assert_eq!(b.len(), ENTRY_CAP_FACTOR);
        assert_eq!(b.entries.front().map(|e| e.timestamp_ms), Some(13));
        assert_eq!(b.dropped_full().snapshots, 1 + 11);
        assert_eq!(b.dropped_full().total_samples, 10 + 11);
    }

    #[test]
    fn batches_cursor_ack_and_reset() {
        let mut b = Buffer::new(10);
        for ts in 1..=5 {
            b.push(samples(ts, 1, 1));
        }
        let first = b.next_batch(2, "h");
        assert_eq!(
            first.iter().map(|s| s.timestamp_ms).collect::<Vec<_>>(),
            vec![1, 2]
        );
        assert_eq!(first[0].host_id, "h");
        assert_eq!(first[0].metrics.len(), 2);
        let second = b.next_batch(2, "h");
        assert_eq!(
            second.iter().map(|s| s.timestamp_ms).collect::<Vec<_>>(),
            vec![3, 4]
        );
        let removed = b.remove_range(1, 2);
        assert_eq!(removed.snapshots, 2);
        assert_eq!(removed.detail_samples, 2);
        assert_eq!(removed.total_samples, 2);
        assert_eq!(b.len(), 3);
        assert_eq!(b.samples(), 6);
        assert!(b.has_unsent());
        b.reset_cursor();
        let again = b.next_batch(10, "h");
        assert_eq!(
            again.iter().map(|s| s.timestamp_ms).collect::<Vec<_>>(),
            vec![3, 4, 5]
        );
        assert!(!b.has_unsent());
        assert!(b.next_batch(10, "h").is_empty());
        assert!(b.remove_range(100, 200).is_empty());
    }

    #[test]
    fn shedding_in_flight_data_counts_only_if_its_batch_does_not_land() {
        // Room for 3 full snapshots (1 total + 1 detail each).
        let mut b = Buffer::new(3);
        for ts in 1..=3 {
            b.push(samples(ts, 1, 1));
        }
        let sent = b.next_batch(2, "h"); // 1 and 2 in flight
        assert_eq!(sent.len(), 2);
        // A fourth strips the oldest detail: snapshot 1's, which is in flight.
        let now = b.push(samples(4, 1, 1));
        assert!(now.is_empty(), "not a drop yet: {now:?}");
        // Acknowledged: the broker has snapshot 1 whole; nothing was lost.
        assert!(b.settle(1, 2, true).is_empty());
        b.remove_range(1, 2);
        assert!(b.dropped_full().is_empty());

        // In flight again, then the stream breaks: what was shed is lost after all.
        let mut b = Buffer::new(3);
        for ts in 1..=3 {
            b.push(samples(ts, 1, 1));
        }
        b.next_batch(1, "h"); // 1 in flight
        // Strips 1's detail (in flight: pending) and 2's (not sent: a drop at once).
        let now = b.push(samples(4, 1, 1));
        assert_eq!(now.detail_samples, 1);
        assert_eq!(b.dropped_full().detail_samples, 1);
        let lost = b.reset_cursor();
        assert_eq!(lost.detail_samples, 1);
        assert_eq!(b.dropped_full().detail_samples, 2);

        // Rejected: lost too.
        let mut b = Buffer::new(3);
        for ts in 1..=3 {
            b.push(samples(ts, 1, 1));
        }
        b.next_batch(1, "h");
        b.push(samples(4, 1, 1));
        assert_eq!(b.settle(1, 1, false).detail_samples, 1);
    }

    #[test]
    fn timestamps_strictly_increase() {
        let mut b = Buffer::new(10);
        b.push(samples(100, 1, 0));
        b.push(samples(100, 1, 0));
        b.push(samples(50, 1, 0));
        assert_eq!(
            shape(&b).into_iter().map(|(t, _)| t).collect::<Vec<_>>(),
            vec![100, 101, 102]
        );
    }
}

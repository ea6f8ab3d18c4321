//! The broker's Prometheus metrics, exposed as text at `/metrics` on the admin port.

use std::sync::atomic::Ordering;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::store::StoreStats;

type Labels1 = [(&'static str, &'static str); 1];
type Labels2 = [(&'static str, &'static str); 2];

/// Latency buckets: 0.25 ms to about 8 s, doubling.
fn latency() -> Histogram {
    Histogram::new(exponential_buckets(0.000_25, 2.0, 16))
}

/// Histograms by one label, each with the latency buckets.
pub type Latencies = Family<Labels1, Histogram, fn() -> Histogram>;

pub struct BrokerMetrics {
    registry: Registry,
    pub batches_received: Counter,
    pub batches_acked: Counter,
    pub snapshots_stored: Counter,
    pub samples_stored: Counter,
    pub snapshots_duplicate: Counter,
    /// Refused input by reason (`validate::Rejection::label`).
    pub rejected: Family<Labels1, Counter>,
    /// Snapshots refused within a batch whose other snapshots were stored.
    pub rejected_snapshots: Family<Labels1, Counter>,
    /// Streams ended by an error, by kind.
    pub stream_errors: Family<Labels1, Counter>,
    pub ingest_streams: Gauge,
    pub store_write_errors: Counter,
    /// Query RPCs by rpc and gRPC code.
    pub queries: Family<Labels2, Counter>,
    /// Seconds a store write of one batch took (the router's write: store, then live).
    pub write_seconds: Histogram,
    /// Seconds from a batch received to its acknowledgement ready (validate, write, answer).
    pub ack_seconds: Histogram,
    /// Seconds a query RPC took to answer, by rpc (range, latest, hosts).
    pub query_seconds: Latencies,
    store_hosts: Gauge,
    store_snapshots: Gauge,
    store_samples: Gauge,
    store_disk_bytes: Gauge,
    store_metric_names: Gauge,
    evicted: Family<Labels1, Counter>,
    wal_corrupt_tails: Counter,
    store_write_retries: Counter,
    store_write_failures: Counter,
    store_blocks: Gauge,
    /// Batches forwarded to their owner, by result (stored, retried, failed), in snapshots.
    forwarded: Family<Labels1, Counter>,
    /// Seconds a forward to the owner took.
    pub forward_seconds: Histogram,
    /// Reads answered without a broker that did not answer (its part missing).
    pub partial_reads: Counter,
    /// The forward queue on disk: batches and bytes in it, and batches by event.
    forward_queue_batches: Gauge,
    forward_queue_bytes: Gauge,
    forward_queue_events: Family<Labels1, Counter>,
    /// A drain's hand-off on this broker: hosts and bytes still to send.
    pub handoff_hosts_remaining: Gauge,
    pub handoff_bytes_remaining: Gauge,
    /// Bytes of sections this broker handed off (sent and verified by their new owner).
    pub handoff_sent_bytes: Counter,
    /// Sections other brokers handed off to this one, written here.
    pub handoff_imported_sections: Counter,
    /// Admin API requests refused for their credential, by reason.
    admin_refused: Family<Labels1, Counter>,
    raft_term: Gauge,
    raft_is_leader: Gauge,
    raft_last_applied: Gauge,
    ring_epoch: Gauge,
    cluster_members: Family<Labels1, Gauge>,
    store_block_bytes: Gauge,
    store_block_cache_bytes: Gauge,
    store_block_cache_lookups: Family<Labels1, Counter>,
    store_blocks_written: Counter,
    store_blocks_compacted: Counter,
    store_block_rollup_sections: Family<Labels1, Counter>,
    store_chunks_closed: Counter,
    store_chunk_merges: Counter,
    store_rollup_days: Counter,
    store_cut_failures: Counter,
    store_corrupt: Family<Labels1, Counter>,
    wal_segments_covered: Counter,
    store_refused_disk_full: Counter,
    /// Connections open and closed by a limit, per listener (`grpc`, `admin`).
    pub listen: ringwatch_net::ListenMetrics,
    /// gRPC calls refused by the credential check, by reason.
    pub auth: ringwatch_net::grpc_auth::AuthMetrics,
    /// Refused input is all counted, but logged at most once per 10 s (a flood of bad input
    /// must not become a flood of log lines).
    pub refusal_log: ringwatch_net::Throttle,
    /// Forwards that failed and batches queued on disk: logged at most once per 10 s too (a
    /// partition fails every batch of the hosts it cuts off).
    pub forward_log: ringwatch_net::Throttle,
}

impl Default for BrokerMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl BrokerMetrics {
    pub fn new() -> Self {
        let mut r = Registry::with_prefix("ringwatch_broker");
        let m = BrokerMetrics {
            batches_received: Counter::default(),
            batches_acked: Counter::default(),
            snapshots_stored: Counter::default(),
            samples_stored: Counter::default(),
            snapshots_duplicate: Counter::default(),
            rejected: Family::default(),
            rejected_snapshots: Family::default(),
            stream_errors: Family::default(),
            ingest_streams: Gauge::default(),
            store_write_errors: Counter::default(),
            queries: Family::default(),
            write_seconds: latency(),
            ack_seconds: latency(),
            query_seconds: Family::new_with_constructor(latency),
            store_hosts: Gauge::default(),
            store_snapshots: Gauge::default(),
            store_samples: Gauge::default(),
            store_disk_bytes: Gauge::default(),
            store_metric_names: Gauge::default(),
            evicted: Family::default(),
            wal_corrupt_tails: Counter::default(),
            store_write_retries: Counter::default(),
            store_write_failures: Counter::default(),
            store_blocks: Gauge::default(),
            admin_refused: Family::default(),
            forwarded: Family::default(),
            forward_seconds: latency(),
            partial_reads: Counter::default(),
            forward_queue_batches: Gauge::default(),
            forward_queue_bytes: Gauge::default(),
            forward_queue_events: Family::default(),
            handoff_hosts_remaining: Gauge::default(),
            handoff_bytes_remaining: Gauge::default(),
            handoff_sent_bytes: Counter::default(),
            handoff_imported_sections: Counter::default(),
            raft_term: Gauge::default(),
            raft_is_leader: Gauge::default(),
            raft_last_applied: Gauge::default(),
            ring_epoch: Gauge::default(),
            cluster_members: Family::default(),
            store_block_bytes: Gauge::default(),
            store_block_cache_bytes: Gauge::default(),
            store_block_cache_lookups: Family::default(),
            store_blocks_written: Counter::default(),
            store_blocks_compacted: Counter::default(),
            store_block_rollup_sections: Family::default(),
            store_chunks_closed: Counter::default(),
            store_chunk_merges: Counter::default(),
            store_rollup_days: Counter::default(),
            store_cut_failures: Counter::default(),
            store_corrupt: Family::default(),
            wal_segments_covered: Counter::default(),
            store_refused_disk_full: Counter::default(),
            listen: ringwatch_net::ListenMetrics::default(),
            auth: ringwatch_net::grpc_auth::AuthMetrics::default(),
            refusal_log: ringwatch_net::Throttle::default(),
            forward_log: ringwatch_net::Throttle::default(),
            registry: Registry::default(),
        };
        m.listen.register(&mut r);
        m.auth.register(&mut r);
        r.register(
            "forwarded_snapshots",
            "Snapshots of batches forwarded to their owner broker, by result (stored, retried, failed)",
            m.forwarded.clone(),
        );
        r.register(
            "forward_seconds",
            "Seconds a forward to the owner broker took",
            m.forward_seconds.clone(),
        );
        r.register(
            "forward_queue_batches",
            "Batches in the forward queue on disk: acknowledged, their owner not reached yet",
            m.forward_queue_batches.clone(),
        );
        r.register(
            "forward_queue_bytes",
            "Bytes of the batches in the forward queue on disk",
            m.forward_queue_bytes.clone(),
        );
        r.register(
            "forward_queue_events",
            "Batches of the forward queue by event: queued, delivered, full (refused, not \
             acknowledged), unwritable (refused), rejected and corrupt (set aside)",
            m.forward_queue_events.clone(),
        );
        r.register(
            "partial_reads",
            "Reads answered without a broker that did not answer (what it holds is missing)",
            m.partial_reads.clone(),
        );
        r.register(
            "handoff_hosts_remaining",
            "Hosts a drained broker still has to hand off to their new owners",
            m.handoff_hosts_remaining.clone(),
        );
        r.register(
            "handoff_bytes_remaining",
            "Bytes of blocks a drained broker still has to hand off",
            m.handoff_bytes_remaining.clone(),
        );
        r.register(
            "handoff_sent_bytes",
            "Bytes of blocks handed off to new owners, verified by them",
            m.handoff_sent_bytes.clone(),
        );
        r.register(
            "handoff_imported_sections",
            "Block sections other brokers handed off to this one",
            m.handoff_imported_sections.clone(),
        );
        r.register(
            "admin_requests_refused",
            "Admin API requests refused for their credential, by reason",
            m.admin_refused.clone(),
        );
        r.register("raft_term", "This broker's Raft term", m.raft_term.clone());
        r.register(
            "raft_is_leader",
            "1 while this broker leads the Raft cluster",
            m.raft_is_leader.clone(),
        );
        r.register(
            "raft_last_applied_index",
            "The last Raft log index this broker applied",
            m.raft_last_applied.clone(),
        );
        r.register(
            "ring_epoch",
            "The ring's epoch as this broker applied it",
            m.ring_epoch.clone(),
        );
        r.register(
            "cluster_members",
            "Cluster members by ring state, as this broker applied them",
            m.cluster_members.clone(),
        );
        r.register(
            "batches_received",
            "Ingest batches received",
            m.batches_received.clone(),
        );
        r.register(
            "batches_acked",
            "Ingest batches acknowledged after storing",
            m.batches_acked.clone(),
        );
        r.register(
            "snapshots_stored",
            "Snapshots newly stored",
            m.snapshots_stored.clone(),
        );
        r.register(
            "samples_stored",
            "Samples (metric values) newly stored",
            m.samples_stored.clone(),
        );
        r.register(
            "snapshots_duplicate",
            "Snapshots ignored as already stored (host + timestamp)",
            m.snapshots_duplicate.clone(),
        );
        r.register(
            "rejected_batches",
            "Input refused, by reason",
            m.rejected.clone(),
        );
        r.register(
            "rejected_snapshots",
            "Snapshots refused within a batch whose other snapshots were stored, by reason",
            m.rejected_snapshots.clone(),
        );
        r.register(
            "stream_errors",
            "Ingest streams ended by an error, by kind",
            m.stream_errors.clone(),
        );
        r.register(
            "ingest_streams",
            "Open ingest streams",
            m.ingest_streams.clone(),
        );
        r.register(
            "store_write_errors",
            "Batches not stored because the store failed (not acknowledged)",
            m.store_write_errors.clone(),
        );
        r.register(
            "queries",
            "Query RPCs by rpc and gRPC code",
            m.queries.clone(),
        );
        r.register(
            "write_seconds",
            "Seconds a batch's store write took",
            m.write_seconds.clone(),
        );
        r.register(
            "ack_seconds",
            "Seconds from a batch received to its acknowledgement",
            m.ack_seconds.clone(),
        );
        r.register(
            "query_seconds",
            "Seconds a query RPC took to answer, by rpc",
            m.query_seconds.clone(),
        );
        r.register("store_hosts", "Hosts in the store", m.store_hosts.clone());
        r.register(
            "store_snapshots",
            "Snapshots held by the store",
            m.store_snapshots.clone(),
        );
        r.register(
            "store_samples",
            "Samples held in memory by the store (embedded: the head; older rows are in blocks on disk)",
            m.store_samples.clone(),
        );
        r.register(
            "store_disk_bytes",
            "Bytes of the store's log and blocks on disk",
            m.store_disk_bytes.clone(),
        );
        r.register(
            "store_metric_names",
            "Distinct metric names held in memory (embedded store)",
            m.store_metric_names.clone(),
        );
        r.register(
            "store_evicted_snapshots",
            "Snapshots dropped by the store, by reason (retention, memory_limit)",
            m.evicted.clone(),
        );
        r.register(
            "wal_corrupt_tails",
            "Log segments found with a torn or corrupt tail at start-up",
            m.wal_corrupt_tails.clone(),
        );
        r.register(
            "store_write_retries",
            "Store round trips that failed and were retried",
            m.store_write_retries.clone(),
        );
        r.register(
            "store_write_failures",
            "Store writes given up after retrying (not acknowledged; the agent keeps the data)",
            m.store_write_failures.clone(),
        );
        r.register(
            "store_blocks",
            "Compressed blocks on disk (embedded store)",
            m.store_blocks.clone(),
        );
        r.register(
            "store_block_bytes",
            "Bytes of the compressed blocks on disk (embedded store)",
            m.store_block_bytes.clone(),
        );
        r.register(
            "store_block_cache_bytes",
            "Bytes of block sections cached in memory for reads",
            m.store_block_cache_bytes.clone(),
        );
        r.register(
            "store_block_cache_lookups",
            "Block section reads, by result (hit, miss)",
            m.store_block_cache_lookups.clone(),
        );
        r.register(
            "store_blocks_written",
            "Blocks written by cuts of the head",
            m.store_blocks_written.clone(),
        );
        r.register(
            "store_blocks_compacted",
            "Blocks merged into one a day by compaction",
            m.store_blocks_compacted.clone(),
        );
        r.register(
            "store_block_rollup_sections",
            "Block sections read for a range with a step, by source: their stored rollups, or their rows (a block of the first version, a row a cut moved during the read, an end inside a minute)",
            m.store_block_rollup_sections.clone(),
        );
        r.register(
            "store_chunks_closed",
            "Redis compact layout: open windows compressed into chunks",
            m.store_chunks_closed.clone(),
        );
        r.register(
            "store_chunk_merges",
            "Redis compact layout: chunks rewritten with rows that came after their window closed",
            m.store_chunk_merges.clone(),
        );
        r.register(
            "store_rollup_days",
            "Redis compact layout: day rollups made (a day over, its windows closed; again after a late row)",
            m.store_rollup_days.clone(),
        );
        r.register(
            "store_cut_failures",
            "Cuts of the head to a block, or merges of blocks, that failed (a cut's rows stay in memory until the next cut)",
            m.store_cut_failures.clone(),
        );
        r.register(
            "store_corrupt",
            "Damaged data found and never served, by kind (block: set aside at start; section: skipped on read; chunk: a Redis chunk or open row that cannot be read)",
            m.store_corrupt.clone(),
        );
        r.register(
            "wal_segments_covered",
            "Log segments deleted because blocks hold their rows",
            m.wal_segments_covered.clone(),
        );
        r.register(
            "store_refused_disk_full",
            "Snapshots refused because the data directory's disk was below its reserve",
            m.store_refused_disk_full.clone(),
        );
        BrokerMetrics { registry: r, ..m }
    }

    /// Counts a batch the store took (for ingest and the legacy protocol alike).
    pub fn stored(&self, out: &crate::store::WriteOutcome) {
        self.batches_acked.inc();
        self.snapshots_stored.inc_by(out.stored as u64);
        self.samples_stored.inc_by(out.samples);
        self.snapshots_duplicate.inc_by(out.duplicates as u64);
    }

    /// The forward queue's size now.
    pub fn set_forward_queue(&self, q: &crate::forward_queue::ForwardQueue) {
        self.forward_queue_batches.set(q.len() as i64);
        self.forward_queue_bytes.set(q.bytes() as i64);
    }

    /// Counts one batch of the forward queue by `event`.
    pub fn forward_queue_event(&self, event: &'static str) {
        self.forward_queue_events
            .get_or_create(&[("event", event)])
            .inc();
    }

    /// Counts `n` snapshots forwarded with `result`.
    pub fn forwarded(&self, result: &'static str, n: usize) {
        self.forwarded
            .get_or_create(&[("result", result)])
            .inc_by(n as u64);
    }

    /// Counts an admin request refused for its credential.
    pub fn admin_refused(&self, reason: &'static str) {
        self.admin_refused
            .get_or_create(&[("reason", reason)])
            .inc();
    }

    /// The control plane's figures, read now.
    pub fn set_cluster(
        &self,
        raft: &crate::control::RaftStatus,
        state: &crate::control::ControlState,
    ) {
        self.raft_term.set(raft.term as i64);
        self.raft_is_leader.set(i64::from(raft.role == "leader"));
        self.raft_last_applied
            .set(raft.last_applied.map_or(-1, |i| i as i64));
        self.ring_epoch.set(state.view.epoch() as i64);
        use ringwatch_core::MemberState::*;
        for s in [Joining, Active, Draining, Drained, Down, Left] {
            let n = state.view.members().filter(|m| m.state == s).count();
            self.cluster_members
                .get_or_create(&[("state", s.as_str())])
                .set(n as i64);
        }
    }

    /// Prometheus text, with store figures read now.
    pub fn render(&self, stats: StoreStats) -> String {
        self.store_hosts.set(stats.hosts as i64);
        self.store_snapshots.set(stats.snapshots as i64);
        self.store_samples.set(stats.samples as i64);
        self.store_disk_bytes.set(stats.disk_bytes as i64);
        self.store_metric_names.set(stats.metric_names as i64);
        let set = |c: &Counter, v: u64| c.inner().store(v, Ordering::Relaxed);
        set(
            &self.evicted.get_or_create(&[("reason", "retention")]),
            stats.evicted_retention,
        );
        set(
            &self.evicted.get_or_create(&[("reason", "memory_limit")]),
            stats.evicted_memory,
        );
        set(&self.wal_corrupt_tails, stats.wal_corrupt_tails);
        set(&self.store_write_retries, stats.write_retries);
        set(&self.store_write_failures, stats.write_failures);
        self.store_blocks.set(stats.blocks as i64);
        self.store_block_bytes.set(stats.block_bytes as i64);
        self.store_block_cache_bytes
            .set(stats.block_cache_bytes as i64);
        set(
            &self
                .store_block_cache_lookups
                .get_or_create(&[("result", "hit")]),
            stats.block_cache_hits,
        );
        set(
            &self
                .store_block_cache_lookups
                .get_or_create(&[("result", "miss")]),
            stats.block_cache_misses,
        );
        set(&self.store_blocks_written, stats.blocks_written);
        set(&self.store_blocks_compacted, stats.blocks_compacted);
        set(
            &self
                .store_block_rollup_sections
                .get_or_create(&[("source", "stored")]),
            stats.block_rollups_stored,
        );
        set(
            &self
                .store_block_rollup_sections
                .get_or_create(&[("source", "rows")]),
            stats.block_rollups_from_rows,
        );
        set(&self.store_cut_failures, stats.cut_failures);
        set(
            &self.store_corrupt.get_or_create(&[("kind", "block")]),
            stats.corrupt_blocks,
        );
        set(
            &self.store_corrupt.get_or_create(&[("kind", "section")]),
            stats.corrupt_sections,
        );
        set(
            &self.store_corrupt.get_or_create(&[("kind", "chunk")]),
            stats.corrupt_chunks,
        );
        set(&self.store_chunks_closed, stats.chunks_closed);
        set(&self.store_chunk_merges, stats.chunk_merges);
        set(&self.store_rollup_days, stats.rollup_days);
        set(&self.wal_segments_covered, stats.wal_segments_covered);
        set(&self.store_refused_disk_full, stats.refused_disk_full);
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

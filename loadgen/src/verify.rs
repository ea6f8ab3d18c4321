//! `ringwatch verify`: reads every host of a ledger back through the brokers' `Range` and
//! checks it against what was acknowledged.
//!
//! Per host, each stored row is placed on the ledger's grid and its values are recomputed and
//! compared bit for bit. The report counts, per host and in total:
//! - **lost**: acknowledged (bit set in the ledger) but not stored;
//! - **duplicates**: a snapshot stored more than once;
//! - **wrong values**: a value that differs from the generator's, a metric missing or extra,
//!   or a row whose timestamp the generator never sent (off the grid);
//! - **out of order**: a row older than the row before it;
//! - **stored, never acknowledged**: allowed (an ack lost on the way, a killed generator);
//! - **expired**: acknowledged but older than the retention now, so not counted as lost.
//!
//! The verdict is clean only when lost, duplicates, wrong values and disorder are all zero and
//! every host could be read.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ringwatch_net::client::GrpcChannel;
use ringwatch_proto::query_client::QueryClient;
use ringwatch_proto::{RangeChunk, RangeRequest};
use serde::Serialize;
use tokio::task::JoinSet;

use crate::config::VerifyConfig;
use crate::ledger::{Header, LedgerError, LedgerReader};
use crate::stats::round;
use crate::values::{self, MetricDef};

/// Rounds over the brokers before a host that cannot be read counts as unreadable.
const READ_ROUNDS: usize = 3;
/// Hosts listed one by one in the report at most.
const MAX_HOSTS_LISTED: usize = 1000;

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error("invalid setting {0}")]
    Config(#[from] crate::config::ConfigError),
    #[error(
        "the ledger was written with value function {found}; this verify knows {known}: use the ringwatch version that wrote it"
    )]
    Version { found: u32, known: u32 },
    #[error(transparent)]
    Broker(#[from] ringwatch_net::client::ClientError),
}

/// One offending snapshot.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct Example {
    pub host: String,
    pub timestamp_ms: i64,
    /// What is wrong with it, when that is more than its kind says.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

/// Counts for one host, or for all.
#[derive(Debug, Default, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct Counts {
    pub acknowledged: u64,
    pub stored: u64,
    pub lost: u64,
    pub duplicates: u64,
    pub wrong_values: u64,
    pub out_of_order: u64,
    pub unacknowledged_stored: u64,
    pub expired: u64,
}

impl Counts {
    fn add(&mut self, o: &Counts) {
        self.acknowledged += o.acknowledged;
        self.stored += o.stored;
        self.lost += o.lost;
        self.duplicates += o.duplicates;
        self.wrong_values += o.wrong_values;
        self.out_of_order += o.out_of_order;
        self.unacknowledged_stored += o.unacknowledged_stored;
        self.expired += o.expired;
    }

    fn bad(&self) -> bool {
        self.lost + self.duplicates + self.wrong_values + self.out_of_order > 0
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct HostReport {
    pub host: String,
    #[serde(flatten)]
    pub counts: Counts,
    /// Why the host could not be read, if it could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The first offending snapshots of each kind.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Examples {
    pub lost: Vec<Example>,
    pub duplicates: Vec<Example>,
    pub wrong_values: Vec<Example>,
    pub out_of_order: Vec<Example>,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub ok: bool,
    pub hosts: u32,
    pub hosts_unreadable: u32,
    pub hosts_with_problems: u32,
    #[serde(flatten)]
    pub total: Counts,
    pub seconds: f64,
    /// Snapshots read and checked per second.
    pub snapshots_per_s: f64,
    pub examples: Examples,
    /// Hosts with a problem (at most 1000).
    pub problem_hosts: Vec<HostReport>,
}

/// What reading one host found.
struct HostResult {
    report: HostReport,
    examples: Examples,
}

struct Checker {
    grid: Header,
    defs: Vec<MetricDef>,
    names: HashMap<String, usize>,
    /// Acknowledged snapshots older than this are expired, not lost.
    expired_before_ms: i64,
    show: usize,
}

/// Reads every host of `cfg.ledger` back from `cfg.brokers` and checks it.
pub async fn run(cfg: &VerifyConfig) -> Result<Report, VerifyError> {
    cfg.validate()?;
    let ledger = Arc::new(LedgerReader::open(&cfg.ledger)?);
    let grid = ledger.header().clone();
    if grid.values_version != values::VALUES_VERSION {
        return Err(VerifyError::Version {
            found: grid.values_version,
            known: values::VALUES_VERSION,
        });
    }
    let defs = values::metric_defs(grid.metrics.min(values::MAX_METRICS));
    let names = defs
        .iter()
        .enumerate()
        .map(|(i, d)| (d.name.clone(), i))
        .collect();
    let now = crate::now_ms();
    let checker = Arc::new(Checker {
        grid,
        defs,
        names,
        expired_before_ms: now - cfg.retention.as_millis() as i64,
        show: cfg.show,
    });
    let connector = crate::config::connector(&cfg.brokers, &cfg.broker_client)?;
    let clients: Vec<QueryClient<GrpcChannel>> = cfg
        .brokers
        .iter()
        .filter(|b| !b.trim().is_empty())
        .map(|b| {
            let e = connector
                .endpoint(b.trim())?
                .connect_timeout(Duration::from_secs(5))
                .timeout(cfg.timeout);
            Ok(QueryClient::new(connector.channel(e.connect_lazy()))
                .max_decoding_message_size(64 << 20))
        })
        .collect::<Result<_, VerifyError>>()?;
    let clients = Arc::new(clients);
    let started = Instant::now();
    let hosts = checker.grid.hosts;
    let mut set = JoinSet::new();
    let mut results: Vec<HostResult> = Vec::new();
    let mut next = 0u32;
    loop {
        while set.len() < cfg.concurrency && next < hosts {
            let (checker, ledger, clients) = (checker.clone(), ledger.clone(), clients.clone());
            let h = next;
            set.spawn(async move { checker.host(h, &ledger, &clients).await });
            next += 1;
        }
        match set.join_next().await {
            Some(Ok(r)) => results.push(r),
            Some(Err(e)) => tracing::error!(error = %e, "a host check failed to run"),
            None => break,
        }
    }
    let mut total = Counts::default();
    let mut examples = Examples::default();
    let mut problem_hosts = Vec::new();
    let (mut unreadable, mut with_problems) = (0, 0);
    results.sort_by(|a, b| a.report.host.cmp(&b.report.host));
    for r in results {
        total.add(&r.report.counts);
        for (all, mine) in [
            (&mut examples.lost, r.examples.lost),
            (&mut examples.duplicates, r.examples.duplicates),
            (&mut examples.wrong_values, r.examples.wrong_values),
            (&mut examples.out_of_order, r.examples.out_of_order),
        ] {
            let room = cfg.show.saturating_sub(all.len());
            all.extend(mine.into_iter().take(room));
        }
        let bad = r.report.counts.bad() || r.report.error.is_some();
        unreadable += u32::from(r.report.error.is_some());
        with_problems += u32::from(bad);
        if bad && problem_hosts.len() < MAX_HOSTS_LISTED {
            problem_hosts.push(r.report);
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok(Report {
        ok: !total.bad() && unreadable == 0,
        hosts,
        hosts_unreadable: unreadable,
        hosts_with_problems: with_problems,
        total,
        seconds: round(seconds, 3),
        snapshots_per_s: round(total.stored as f64 / seconds.max(1e-6), 0),
        examples,
        problem_hosts,
    })
}

impl Checker {
    /// Reads host `h` from the first broker that has it and checks it. A broker that does not
    /// know the host sends the read on to the next; one that fails is retried (three rounds
    /// over the brokers, a second apart) before the host counts as unreadable.
    async fn host(
        &self,
        h: u32,
        ledger: &LedgerReader,
        clients: &[QueryClient<GrpcChannel>],
    ) -> HostResult {
        let host = self.grid.host_id(h);
        let mut last_error = None;
        for round in 0..READ_ROUNDS {
            if round > 0 {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            let mut unknown = 0;
            for client in clients {
                let mut state = HostCheck::new(self, h, &host);
                match self.read(h, &host, client.clone(), &mut state).await {
                    Ok(true) => return state.finish(self, ledger),
                    Ok(false) => unknown += 1,
                    Err(status) => {
                        tracing::debug!(%host, error = %status, "range read failed; trying the next broker");
                        last_error = Some(format!("{}: {}", status.code(), status.message()));
                    }
                }
            }
            // No broker has heard of it: it has stored nothing.
            if unknown == clients.len() {
                return HostCheck::new(self, h, &host).finish(self, ledger);
            }
        }
        let mut counts = Counts::default();
        for k in 0..self.grid.snapshots_per_host {
            counts.acknowledged += u64::from(ledger.acked(h, k));
        }
        HostResult {
            report: HostReport {
                host,
                counts,
                error: last_error,
            },
            examples: Examples::default(),
        }
    }

    /// Streams host `h`'s rows through `state`, a page at a time (each as many rows as the
    /// broker gives at once; the next page starts after the newest row seen). `Ok(false)` when
    /// the broker does not know the host.
    async fn read(
        &self,
        h: u32,
        host: &str,
        mut client: QueryClient<GrpcChannel>,
        state: &mut HostCheck,
    ) -> Result<bool, tonic::Status> {
        let last = self.grid.snapshots_per_host.saturating_sub(1);
        let end_ms = self.grid.ts(h, last);
        let mut start_ms = self.grid.ts(h, 0);
        loop {
            let req = RangeRequest {
                host_id: host.to_string(),
                start_ms,
                end_ms,
                metric_names: Vec::new(),
                limit: 0,
                sparse_ok: true,
                step_ms: 0,
            };
            let mut stream = match client.range(req).await {
                Ok(r) => r.into_inner(),
                Err(s) if s.code() == tonic::Code::NotFound => return Ok(false),
                Err(s) => return Err(s),
            };
            let mut rows = 0u64;
            let mut newest = start_ms;
            while let Some(chunk) = stream.message().await? {
                rows += chunk.timestamps_ms.len() as u64;
                if let Some(&t) = chunk.timestamps_ms.iter().max() {
                    newest = newest.max(t);
                }
                state.chunk(self, &chunk);
            }
            if rows == 0 || newest >= end_ms {
                return Ok(true);
            }
            start_ms = newest + 1;
        }
    }
}

/// The running check of one host.
struct HostCheck {
    h: u32,
    host: String,
    seen: Vec<u64>,
    prev_ts: Option<i64>,
    counts: Counts,
    examples: Examples,
}

fn example(list: &mut Vec<Example>, show: usize, host: &str, ts: i64, detail: String) {
    if list.len() < show {
        list.push(Example {
            host: host.to_string(),
            timestamp_ms: ts,
            detail,
        });
    }
}

impl HostCheck {
    fn new(c: &Checker, h: u32, host: &str) -> HostCheck {
        HostCheck {
            h,
            host: host.to_string(),
            seen: vec![0; c.grid.words_per_host() as usize],
            prev_ts: None,
            counts: Counts::default(),
            examples: Examples::default(),
        }
    }

    /// Marks snapshot `k` seen; true if it was already.
    fn seen_before(&mut self, k: u64) -> bool {
        let (w, bit) = ((k / 64) as usize, 1u64 << (k % 64));
        let before = self.seen[w] & bit != 0;
        self.seen[w] |= bit;
        before
    }

    fn chunk(&mut self, c: &Checker, chunk: &RangeChunk) {
        // Which column holds each of the generator's metrics; columns it never sends.
        let mut col_of: Vec<Option<usize>> = vec![None; c.defs.len()];
        let mut foreign = Vec::new();
        for (ci, col) in chunk.columns.iter().enumerate() {
            match c.names.get(&col.name) {
                Some(&i) if c.defs[i].unit as i32 == col.unit => col_of[i] = Some(ci),
                Some(&i) => foreign.push((
                    ci,
                    format!(
                        "{} stored with unit {} (sent {})",
                        col.name, col.unit, c.defs[i].unit as i32
                    ),
                )),
                None => foreign.push((ci, format!("{} was never sent", col.name))),
            }
        }
        for (row, &ts) in chunk.timestamps_ms.iter().enumerate() {
            self.counts.stored += 1;
            let k = c.grid.index_of(self.h, ts);
            let duplicate = match k {
                Some(k) => self.seen_before(k),
                None => self.prev_ts == Some(ts),
            };
            if duplicate {
                self.counts.duplicates += 1;
                example(
                    &mut self.examples.duplicates,
                    c.show,
                    &self.host,
                    ts,
                    String::new(),
                );
            } else if self.prev_ts.is_some_and(|p| ts < p) {
                self.counts.out_of_order += 1;
                let detail = format!("after {}", self.prev_ts.unwrap_or_default());
                example(
                    &mut self.examples.out_of_order,
                    c.show,
                    &self.host,
                    ts,
                    detail,
                );
            }
            self.prev_ts = Some(ts);
            let problem = match k {
                None => Some("timestamp off the generator's grid".to_string()),
                Some(_) => self.row_problem(c, chunk, &col_of, &foreign, row, ts),
            };
            if let Some(detail) = problem {
                self.counts.wrong_values += 1;
                example(
                    &mut self.examples.wrong_values,
                    c.show,
                    &self.host,
                    ts,
                    detail,
                );
            }
        }
    }

    /// What is wrong with one row's values, if anything.
    fn row_problem(
        &self,
        c: &Checker,
        chunk: &RangeChunk,
        col_of: &[Option<usize>],
        foreign: &[(usize, String)],
        row: usize,
        ts: i64,
    ) -> Option<String> {
        // Dense or sparse columns alike; None where the row has no value.
        let value_at = |ci: usize| chunk.columns.get(ci).and_then(|col| col.value_at(row));
        for (i, d) in c.defs.iter().enumerate() {
            let want = values::value(self.h, ts, i, d.unit);
            match col_of[i].and_then(value_at) {
                Some(got) if got.to_bits() == want.to_bits() => {}
                Some(got) => return Some(format!("{} = {got:?}, sent {want:?}", d.name)),
                None => return Some(format!("{} missing", d.name)),
            }
        }
        foreign
            .iter()
            .find(|(ci, _)| value_at(*ci).is_some())
            .map(|(_, why)| why.clone())
    }

    fn finish(mut self, c: &Checker, ledger: &LedgerReader) -> HostResult {
        for k in 0..c.grid.snapshots_per_host {
            let acked = ledger.acked(self.h, k);
            let (w, bit) = ((k / 64) as usize, 1u64 << (k % 64));
            let seen = self.seen[w] & bit != 0;
            self.counts.acknowledged += u64::from(acked);
            if acked && !seen {
                let ts = c.grid.ts(self.h, k);
                if ts < c.expired_before_ms {
                    self.counts.expired += 1;
                } else {
                    self.counts.lost += 1;
                    example(
                        &mut self.examples.lost,
                        c.show,
                        &self.host,
                        ts,
                        String::new(),
                    );
                }
            } else if seen && !acked {
                self.counts.unacknowledged_stored += 1;
            }
        }
        HostResult {
            report: HostReport {
                host: self.host,
                counts: self.counts,
                error: None,
            },
            examples: self.examples,
        }
    }
}

fn fmt_examples(out: &mut String, what: &str, list: &[Example]) {
    use std::fmt::Write;
    for e in list {
        let _ = write!(out, "  {what}: {} @ {}", e.host, e.timestamp_ms);
        if !e.detail.is_empty() {
            let _ = write!(out, " ({})", e.detail);
        }
        out.push('\n');
    }
}

impl Report {
    /// The report for people.
    pub fn text(&self) -> String {
        use std::fmt::Write;
        let t = &self.total;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "verify: {} hosts, {} snapshots read in {:.1} s ({} snapshots/s)",
            self.hosts, t.stored, self.seconds, self.snapshots_per_s
        );
        for (label, n, note) in [
            ("acknowledged", t.acknowledged, ""),
            ("lost (acknowledged, not stored)", t.lost, ""),
            ("stored more than once", t.duplicates, ""),
            ("wrong values", t.wrong_values, ""),
            ("out of timestamp order", t.out_of_order, ""),
            (
                "stored, never acknowledged",
                t.unacknowledged_stored,
                " (allowed)",
            ),
            (
                "expired (older than the retention)",
                t.expired,
                " (not checked)",
            ),
        ] {
            let _ = writeln!(out, "  {label:<38} {n}{note}");
        }
        let _ = writeln!(
            out,
            "  {:<38} {}",
            "hosts unreadable", self.hosts_unreadable
        );
        for h in self.problem_hosts.iter().take(20) {
            let c = &h.counts;
            let _ = write!(
                out,
                "  host {}: lost {} duplicates {} wrong {} disorder {} (acknowledged {}, stored {})",
                h.host,
                c.lost,
                c.duplicates,
                c.wrong_values,
                c.out_of_order,
                c.acknowledged,
                c.stored
            );
            if let Some(e) = &h.error {
                let _ = write!(out, " unreadable: {e}");
            }
            out.push('\n');
        }
        if self.hosts_with_problems > 20 {
            let _ = writeln!(out, "  … and {} more hosts", self.hosts_with_problems - 20);
        }
        fmt_examples(&mut out, "lost", &self.examples.lost);
        fmt_examples(&mut out, "duplicate", &self.examples.duplicates);
        fmt_examples(&mut out, "wrong", &self.examples.wrong_values);
        fmt_examples(&mut out, "out of order", &self.examples.out_of_order);
        let _ = writeln!(
            out,
            "{}",
            if self.ok {
                "OK: no acknowledged snapshot lost, none stored twice, every value exact, all in order"
            } else {
                "FAILED"
            }
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::LedgerWriter;
    use ringwatch_proto::Column;

    fn grid() -> Header {
        Header {
            host_prefix: "t-".into(),
            host_digits: 1,
            hosts: 1,
            start_ms: 1_000_000,
            interval_ms: 1000,
            snapshots_per_host: 8,
            metrics: 3,
            values_version: values::VALUES_VERSION,
            created_ms: 0,
            mode: "live".into(),
        }
    }

    fn checker(expired_before_ms: i64) -> Checker {
        let defs = values::metric_defs(3);
        Checker {
            names: defs
                .iter()
                .enumerate()
                .map(|(i, d)| (d.name.clone(), i))
                .collect(),
            defs,
            grid: grid(),
            expired_before_ms,
            show: 10,
        }
    }

    /// A chunk of host 0's rows at `ts`, with the generator's values.
    fn chunk(c: &Checker, ts: &[i64]) -> RangeChunk {
        RangeChunk {
            timestamps_ms: ts.to_vec(),
            columns: c
                .defs
                .iter()
                .enumerate()
                .map(|(i, d)| Column {
                    name: d.name.clone(),
                    unit: d.unit as i32,
                    values: ts.iter().map(|&t| values::value(0, t, i, d.unit)).collect(),
                    rows: vec![],
                    ..Default::default()
                })
                .collect(),
            truncated: false,
            missing_brokers: vec![],
        }
    }

    fn ledger(dir: &std::path::Path, acked: &[u64]) -> LedgerReader {
        let path = dir.join("ledger");
        let w = LedgerWriter::create(&path, grid()).unwrap();
        for &k in acked {
            w.mark(0, k);
        }
        LedgerReader::open(&path).unwrap()
    }

    fn check(c: &Checker, chunks: &[RangeChunk], acked: &[u64]) -> HostResult {
        let dir = tempfile::tempdir().unwrap();
        let l = ledger(dir.path(), acked);
        let mut s = HostCheck::new(c, 0, "t-0");
        for ch in chunks {
            s.chunk(c, ch);
        }
        s.finish(c, &l)
    }

    #[test]
    fn a_clean_host_is_clean_and_unacknowledged_rows_are_allowed() {
        let c = checker(0);
        let ts: Vec<i64> = (0..8).map(|k| c.grid.ts(0, k)).collect();
        let r = check(
            &c,
            &[chunk(&c, &ts[..5]), chunk(&c, &ts[5..])],
            &[0, 1, 2, 3, 4, 5],
        );
        let n = r.report.counts;
        assert!(!n.bad(), "{n:?}");
        assert_eq!(
            (n.acknowledged, n.stored, n.unacknowledged_stored),
            (6, 8, 2)
        );
    }

    #[test]
    fn loss_duplicates_disorder_and_wrong_values_are_each_found() {
        let c = checker(0);
        let t = |k| c.grid.ts(0, k);
        // Rows 0, 2, 2 (a duplicate), 1 (out of order), 3 with a wrong value, 4 with a metric
        // missing, an off-grid row; 5 acknowledged and never stored.
        let mut ch = chunk(&c, &[t(0), t(2), t(2), t(1), t(3), t(4), t(4) + 7]);
        ch.columns[1].values[4] += 0.5;
        ch.columns[2].values[5] = f64::NAN;
        let r = check(&c, &[ch], &[0, 1, 2, 3, 4, 5]);
        let n = r.report.counts;
        assert_eq!(n.lost, 1, "{n:?}");
        assert_eq!(n.duplicates, 1, "{n:?}");
        assert_eq!(n.out_of_order, 1, "{n:?}");
        assert_eq!(n.wrong_values, 3, "wrong, missing, off the grid: {n:?}");
        assert_eq!(r.examples.lost[0].timestamp_ms, t(5));
        assert_eq!(r.examples.duplicates[0].timestamp_ms, t(2));
        assert_eq!(r.examples.out_of_order[0].timestamp_ms, t(1));
        let wrong: Vec<&str> = r
            .examples
            .wrong_values
            .iter()
            .map(|e| e.detail.as_str())
            .collect();
        assert!(wrong[0].contains("cpu.cores"), "{wrong:?}");
        assert!(wrong[1].contains("missing"), "{wrong:?}");
        assert!(wrong[2].contains("off the generator's grid"), "{wrong:?}");
    }

    #[test]
    fn a_foreign_metric_or_unit_is_a_wrong_value() {
        let c = checker(0);
        let t = c.grid.ts(0, 0);
        let mut ch = chunk(&c, &[t, c.grid.ts(0, 1)]);
        ch.columns.push(Column {
            name: "made.up".into(),
            unit: 1,
            values: vec![1.0, f64::NAN],
            rows: vec![],
            ..Default::default()
        });
        let r = check(&c, &[ch.clone()], &[0, 1]);
        assert_eq!(r.report.counts.wrong_values, 1, "only the row that has it");
        assert!(r.examples.wrong_values[0].detail.contains("never sent"));
        ch.columns.pop();
        ch.columns[0].unit = ringwatch_proto::Unit::Bytes as i32;
        let r = check(&c, &[ch], &[0, 1]);
        assert_eq!(r.report.counts.wrong_values, 2);
    }

    #[test]
    fn acknowledged_rows_past_the_retention_are_expired_not_lost() {
        let c = checker(grid().ts(0, 3));
        let r = check(&c, &[chunk(&c, &[c.grid.ts(0, 5)])], &[0, 1, 2, 3, 4, 5]);
        let n = r.report.counts;
        assert_eq!((n.expired, n.lost), (3, 2), "{n:?}");
    }
}

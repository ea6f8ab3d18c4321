//! The block codec, chosen by measurement: pco against Gorilla XOR (the `tsz` crate) on
//! agent-like columns, bytes a value and speed.
//!
//! `cargo bench --bench codec`; CODEC_HOSTS (20) hosts × 60 metrics (the agent's totals, then
//! per-core usage) × CODEC_ROWS (720: 1 h at 5 s) rows, values from `ringwatch loadgen`'s
//! generator (a base, a slow wave and noise per series, in each unit's resolution: hundredths
//! of a percent, whole bytes, rates as counter deltas ÷ 8). Each column is compressed on its
//! own, as a block section holds it. Timestamps: jittered 5 s steps, pco with delta-of-delta
//! against Gorilla's delta-of-delta (tsz encodes them with the values; its value-only cost is
//! measured with a constant step, which costs one bit a point).

use std::time::Instant;

use pco::standalone::{simple_compress, simple_decompress};
use pco::{ChunkConfig, DeltaSpec};
use ringwatch_loadgen::values::{metric_defs, value};
use tsz::stream::{BufferedReader, BufferedWriter};
use tsz::{DataPoint, Decode, Encode, StdDecoder, StdEncoder};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn gorilla(ts: &[u64], values: &[f64]) -> Vec<u8> {
    let mut enc = StdEncoder::new(ts[0], BufferedWriter::new());
    for (&t, &v) in ts.iter().zip(values) {
        enc.encode(DataPoint::new(t, v));
    }
    enc.close().into_vec()
}

fn ungorilla(bytes: &[u8], n: usize) -> Vec<f64> {
    let mut dec = StdDecoder::new(BufferedReader::new(bytes.into()));
    let mut out = Vec::with_capacity(n);
    while let Ok(dp) = dec.next() {
        out.push(dp.get_value());
    }
    out
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let hosts = env("CODEC_HOSTS", 20);
    let rows = env("CODEC_ROWS", 720);
    let defs = metric_defs(60);
    let start = 1_795_000_000_000i64;
    let ts_ms: Vec<i64> = (0..rows as i64)
        .map(|i| start + i * 5000 + (i * 7919 % 13))
        .collect();
    let steady: Vec<u64> = (0..rows as u64).map(|i| 1_795_000_000 + i * 5).collect();
    let columns: Vec<Vec<f64>> = (0..hosts as u32)
        .flat_map(|h| {
            let ts = &ts_ms;
            defs.iter()
                .enumerate()
                .map(move |(m, d)| ts.iter().map(|&t| value(h, t, m, d.unit)).collect())
        })
        .collect();
    let n = (columns.len() * rows) as f64;

    for level in [0usize, 2, 4, 8] {
        let cfg = ChunkConfig::default().with_compression_level(level);
        let t = Instant::now();
        let packed: Vec<Vec<u8>> = columns
            .iter()
            .map(|c| simple_compress(c, &cfg).expect("compress"))
            .collect();
        let enc = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let mut back = 0usize;
        for (p, c) in packed.iter().zip(&columns) {
            let v: Vec<f64> = simple_decompress(p).expect("decompress");
            assert!(
                v.iter().zip(c).all(|(a, b)| a.to_bits() == b.to_bits()),
                "bit-exact"
            );
            back += v.len();
        }
        let dec = t.elapsed().as_secs_f64();
        let bytes: usize = packed.iter().map(Vec::len).sum();
        println!(
            "values pco level {level}: {:.2} bytes a value, compress {:.0} M values/s, decompress {:.0} M values/s ({back} values, bit-exact)",
            bytes as f64 / n,
            n / enc / 1e6,
            n / dec / 1e6
        );
    }
    let t = Instant::now();
    let packed: Vec<Vec<u8>> = columns.iter().map(|c| gorilla(&steady, c)).collect();
    let enc = t.elapsed().as_secs_f64();
    let t = Instant::now();
    for (p, c) in packed.iter().zip(&columns) {
        let v = ungorilla(p, rows);
        assert_eq!(v.len(), c.len());
        assert!(
            v.iter().zip(c).all(|(a, b)| a.to_bits() == b.to_bits()),
            "bit-exact"
        );
    }
    let dec = t.elapsed().as_secs_f64();
    let bytes: usize = packed.iter().map(Vec::len).sum();
    println!(
        "values Gorilla XOR (tsz): {:.2} bytes a value (a constant step's bit included), compress {:.0} M values/s, decompress {:.0} M values/s",
        bytes as f64 / n,
        n / enc / 1e6,
        n / dec / 1e6
    );

    // Per unit: where the bytes go (pco level 8).
    let cfg = ChunkConfig::default();
    let mut by_unit: std::collections::BTreeMap<String, (usize, usize)> = Default::default();
    for (i, c) in columns.iter().enumerate() {
        let unit = format!("{:?}", defs[i % defs.len()].unit);
        let e = by_unit.entry(unit).or_default();
        e.0 += simple_compress(c, &cfg).expect("compress").len();
        e.1 += c.len();
    }
    for (unit, (bytes, values)) in by_unit {
        println!(
            "  pco {unit}: {:.2} bytes a value",
            bytes as f64 / values as f64
        );
    }

    // The log: bytes a sample of a snapshot record (8 bytes of frame and a kind byte, then the
    // snapshot), as the release before wrote it (with the window statistics) and as the log
    // writes it now (without: `wal::LoggedSnapshot` encodes exactly prost's bytes of the
    // snapshot with its windows left out, a unit test checks it).
    {
        use prost::Message;
        let record = |window: bool| -> f64 {
            let snap = ringwatch_proto::Snapshot {
                host_id: "loadgen-007".into(),
                timestamp_ms: ts_ms[100],
                metrics: ringwatch_loadgen::values::snapshot_metrics(7, ts_ms[100], &defs, window),
            };
            (9 + snap.encoded_len()) as f64 / defs.len() as f64
        };
        println!(
            "log record, 60 metrics: {:.1} bytes a sample with the window statistics, {:.1} without",
            record(true),
            record(false)
        );
    }

    // Rollups: per metric and bucket (1 or 10 min), min, max, sum and count, each a pco column
    // (level 4, as a block stores them beside the rows), against the raw values of the same
    // two hours, by interval: what a block's rollup costs on disk.
    {
        let cfg = ChunkConfig::default().with_compression_level(4);
        for (span_s, interval_s) in [2i64, 24]
            .iter()
            .flat_map(|h| [1i64, 2, 5, 10, 20, 30, 60].map(|i| (h * 3600, i)))
        {
            let n_rows = span_s / interval_s;
            let ts: Vec<i64> = (0..n_rows).map(|i| start + i * interval_s * 1000).collect();
            let mut line = format!("rollup of {:>2} h at {interval_s:>2} s:", span_s / 3600);
            for width_s in [60i64, 600] {
                let (mut raw, mut rolled, mut values) = (0usize, 0usize, 0usize);
                for h in 0..hosts.min(5) as u32 {
                    for (m, d) in defs.iter().enumerate() {
                        let col: Vec<f64> = ts.iter().map(|&t| value(h, t, m, d.unit)).collect();
                        raw += simple_compress(&col, &cfg).expect("compress").len();
                        values += col.len();
                        let mut parts = [vec![], vec![], vec![], vec![]];
                        for b in col.chunks((width_s / interval_s).max(1) as usize) {
                            parts[0].push(b.iter().copied().fold(f64::INFINITY, f64::min));
                            parts[1].push(b.iter().copied().fold(f64::NEG_INFINITY, f64::max));
                            parts[2].push(b.iter().sum::<f64>());
                            parts[3].push(b.len() as f64);
                        }
                        rolled += parts
                            .iter()
                            .map(|p| simple_compress(p, &cfg).expect("compress").len())
                            .sum::<usize>();
                    }
                }
                if width_s == 60 {
                    line += &format!(" raw {:.2} bytes a value;", raw as f64 / values as f64);
                }
                line += &format!(
                    " {} min buckets {:.3} bytes a value ({:.0} % of raw)",
                    width_s / 60,
                    rolled as f64 / values as f64,
                    100.0 * rolled as f64 / raw as f64
                );
            }
            println!("{line}");
        }
    }

    // Timestamps.
    let dod = ChunkConfig::default().with_delta_spec(DeltaSpec::TryConsecutive(2));
    let p = simple_compress(&ts_ms, &dod).expect("compress");
    let back: Vec<i64> = simple_decompress(&p).expect("decompress");
    assert_eq!(back, ts_ms);
    let jittered: Vec<u64> = ts_ms.iter().map(|&t| t as u64).collect();
    let g = gorilla(&jittered, &vec![0.0; rows]);
    println!(
        "timestamps (jittered 5 s, ms): pco delta-of-delta {:.2} bytes a row, Gorilla {:.2} (with a constant value)",
        p.len() as f64 / rows as f64,
        g.len() as f64 / rows as f64
    );
}

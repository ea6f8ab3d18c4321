//! Bad input on every RPC of a real broker process: clear gRPC statuses with reasons, the
//! stream (or other streams) unaffected, every rejection counted in /metrics.

mod common;

use std::time::Duration;

use common::*;
use ringwatch_proto::ingest_client::IngestClient;
use ringwatch_proto::query_client::QueryClient;
use ringwatch_proto::{
    AgentMessage, Batch, BrokerMessage, LatestRequest, Metric, RangeRequest, Register, Snapshot,
    Unit, agent_message, broker_message,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;

struct Agent {
    tx: mpsc::Sender<AgentMessage>,
    rx: Streaming<BrokerMessage>,
}

impl Agent {
    async fn open(url: &str) -> Agent {
        let mut client = IngestClient::connect(url.to_string())
            .await
            .expect("connect");
        let (tx, rx) = mpsc::channel(16);
        let rx = client
            .stream(ReceiverStream::new(rx))
            .await
            .expect("open stream")
            .into_inner();
        Agent { tx, rx }
    }

    async fn send(&self, body: agent_message::Body) {
        self.tx
            .send(AgentMessage { body: Some(body) })
            .await
            .expect("send");
    }

    async fn register(&self, host: &str) {
        self.send(agent_message::Body::Register(Register {
            host_id: host.into(),
            agent_version: "test".into(),
            interval_ms: 1000,
            ..Default::default()
        }))
        .await;
    }

    async fn batch(&self, seq: u64, snapshots: Vec<Snapshot>) {
        self.send(agent_message::Body::Batch(Batch { seq, snapshots }))
            .await;
    }

    async fn reply(&mut self) -> Result<broker_message::Body, tonic::Status> {
        match tokio::time::timeout(Duration::from_secs(10), self.rx.message())
            .await
            .expect("reply within 10 s")
        {
            Ok(Some(m)) => Ok(m.body.expect("body")),
            Ok(None) => Err(tonic::Status::cancelled("stream ended")),
            Err(s) => Err(s),
        }
    }
}

fn snap(host: &str, ts: i64, value: f64) -> Snapshot {
    Snapshot {
        host_id: host.into(),
        timestamp_ms: ts,
        metrics: vec![Metric {
            name: "cpu.usage".into(),
            value,
            unit: Unit::Percent as i32,
            window: None,
        }],
    }
}

fn expect_ack(r: Result<broker_message::Body, tonic::Status>, seq: u64) -> ringwatch_proto::Ack {
    match r {
        Ok(broker_message::Body::Ack(a)) if a.seq == seq => a,
        other => panic!("expected ack {seq}, got {other:?}"),
    }
}

fn expect_reject(
    r: Result<broker_message::Body, tonic::Status>,
    seq: u64,
    code: tonic::Code,
    words: &str,
) {
    match r {
        Ok(broker_message::Body::Reject(rej)) => {
            assert_eq!(rej.seq, seq);
            assert_eq!(rej.code, code as i32, "{rej:?}");
            assert!(
                rej.reason.contains(words),
                "reason {:?} should mention {words:?}",
                rej.reason
            );
        }
        other => panic!("expected a reject of {seq}, got {other:?}"),
    }
}

#[test]
fn bad_batches_are_rejected_with_reasons_and_the_stream_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker(dir.path(), &[]);
    let url = broker.grpc_url();
    block_on(async {
        let mut a = Agent::open(&url).await;
        let now = now_ms();
        // A batch before registering.
        a.batch(1, vec![snap("h1", now, 1.0)]).await;
        expect_reject(
            a.reply().await,
            1,
            tonic::Code::FailedPrecondition,
            "Register",
        );
        a.register("h1").await;
        a.batch(2, vec![snap("h1", now, f64::NAN)]).await;
        expect_reject(a.reply().await, 2, tonic::Code::InvalidArgument, "NaN");
        a.batch(3, vec![snap("h1", now, f64::INFINITY)]).await;
        expect_reject(a.reply().await, 3, tonic::Code::InvalidArgument, "infinite");
        a.batch(4, vec![snap("h1", now + 3_600_000, 1.0)]).await;
        expect_reject(
            a.reply().await,
            4,
            tonic::Code::InvalidArgument,
            "outside the accepted window",
        );
        a.batch(5, vec![snap("h1", now - 30 * 24 * 3_600_000, 1.0)])
            .await;
        expect_reject(
            a.reply().await,
            5,
            tonic::Code::InvalidArgument,
            "outside the accepted window",
        );
        a.batch(6, vec![snap("", now, 1.0)]).await;
        expect_reject(
            a.reply().await,
            6,
            tonic::Code::InvalidArgument,
            "host_id is empty",
        );
        a.batch(7, vec![snap("h2", now, 1.0)]).await;
        expect_reject(
            a.reply().await,
            7,
            tonic::Code::PermissionDenied,
            "registered as",
        );
        a.batch(8, vec![]).await;
        expect_reject(
            a.reply().await,
            8,
            tonic::Code::InvalidArgument,
            "no snapshots",
        );
        let mut bad_name = snap("h1", now, 1.0);
        bad_name.metrics[0].name = "cpu usage; DROP".into();
        a.batch(9, vec![bad_name]).await;
        expect_reject(
            a.reply().await,
            9,
            tonic::Code::InvalidArgument,
            "metric name",
        );
        a.send(agent_message::Body::Heartbeat(Default::default()))
            .await;
        // The same stream still takes good data, and a resent batch is acknowledged as duplicates.
        a.batch(
            10,
            vec![snap("h1", now, 42.0), snap("h1", now - 1000, 41.0)],
        )
        .await;
        let ack = expect_ack(a.reply().await, 10);
        assert_eq!((ack.stored, ack.duplicates), (2, 0));
        a.batch(
            11,
            vec![snap("h1", now, 42.0), snap("h1", now - 1000, 41.0)],
        )
        .await;
        let ack = expect_ack(a.reply().await, 11);
        assert_eq!((ack.stored, ack.duplicates), (0, 2));
        // One bad snapshot in a batch: the others are stored, the bad one is named in the Ack.
        a.batch(
            12,
            vec![
                snap("h1", now - 3000, 39.0),
                snap("h1", now - 2500, f64::NAN),
                snap("h1", now - 2000, 40.0),
            ],
        )
        .await;
        let ack = expect_ack(a.reply().await, 12);
        assert_eq!(ack.stored, 2);
        assert_eq!(ack.rejected_timestamps_ms, vec![now - 2500]);
        assert!(ack.reject_reason.contains("NaN"), "{}", ack.reject_reason);
        let stored = range_all(&url, "h1").await;
        assert_eq!(
            stored
                .iter()
                .map(|s| s.metrics[0].value)
                .collect::<Vec<_>>(),
            vec![39.0, 40.0, 41.0, 42.0]
        );
    });
    let m = scrape(&broker.addr("admin"));
    for reason in [
        "not_registered",
        "non_finite_value",
        "timestamp_out_of_range",
        "empty_host_id",
        "host_mismatch",
        "empty_batch",
        "bad_metric_name",
    ] {
        let n = metric(
            &m,
            &format!("ringwatch_broker_rejected_batches_total{{reason=\"{reason}\""),
        );
        assert!(n >= 1.0, "rejections for {reason} counted: {n}\n{m}");
    }
    assert_eq!(
        metric(&m, "ringwatch_broker_snapshots_duplicate_total"),
        2.0
    );
    assert_eq!(metric(&m, "ringwatch_broker_snapshots_stored_total"), 4.0);
    assert_eq!(
        metric(
            &m,
            "ringwatch_broker_rejected_snapshots_total{reason=\"non_finite_value\""
        ),
        1.0
    );
}

#[test]
fn a_bad_registration_ends_only_that_stream() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker(dir.path(), &[]);
    let url = broker.grpc_url();
    block_on(async {
        let mut good = Agent::open(&url).await;
        good.register("good-host").await;
        let mut bad = Agent::open(&url).await;
        bad.register("").await;
        let status = bad.reply().await.expect_err("stream ends");
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert!(status.message().contains("host_id is empty"), "{status:?}");
        let mut bad2 = Agent::open(&url).await;
        bad2.register("white space").await;
        let status = bad2.reply().await.expect_err("stream ends");
        assert!(status.message().contains("[A-Za-z0-9._-]"), "{status:?}");
        good.batch(1, vec![snap("good-host", now_ms(), 1.0)]).await;
        expect_ack(good.reply().await, 1);
    });
}

#[test]
fn oversized_and_malformed_messages_end_their_stream_and_others_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker(dir.path(), &["--max-message-bytes", "65536"]);
    let url = broker.grpc_url();
    block_on(async {
        let mut other = Agent::open(&url).await;
        other.register("steady").await;

        let mut big = Agent::open(&url).await;
        big.register("big").await;
        let huge: Vec<Snapshot> = (0..2000).map(|i| snap("big", now_ms() - i, 1.0)).collect();
        big.batch(1, huge).await;
        let status = big
            .reply()
            .await
            .expect_err("oversized message ends the stream");
        assert_eq!(status.code(), tonic::Code::OutOfRange, "{status:?}");
        assert!(status.message().contains("too large"), "{status:?}");

        let status = raw::send_garbage(&url).await;
        assert_ne!(status.code(), tonic::Code::Ok);
        assert!(
            status.message().to_lowercase().contains("decode"),
            "{status:?}"
        );

        other.batch(1, vec![snap("steady", now_ms(), 3.0)]).await;
        expect_ack(other.reply().await, 1);
    });
    let m = scrape(&broker.addr("admin"));
    assert_eq!(
        metric(
            &m,
            "ringwatch_broker_stream_errors_total{kind=\"oversized\""
        ),
        1.0,
        "{m}"
    );
    assert_eq!(
        metric(
            &m,
            "ringwatch_broker_stream_errors_total{kind=\"malformed\""
        ),
        1.0,
        "{m}"
    );
}

#[test]
fn query_rpcs_refuse_bad_parameters_with_reasons() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker(dir.path(), &["--query-max-snapshots", "1000"]);
    let url = broker.grpc_url();
    block_on(async {
        let mut q = QueryClient::connect(url.clone()).await.unwrap();
        let req = |host: &str, start: i64, end: i64, names: Vec<String>, limit: u32| RangeRequest {
            host_id: host.into(),
            start_ms: start,
            end_ms: end,
            metric_names: names,
            limit,
            sparse_ok: false,
            step_ms: 0,
        };
        let code = |r: Result<
            tonic::Response<tonic::Streaming<ringwatch_proto::RangeChunk>>,
            tonic::Status,
        >| {
            let s = r.expect_err("refused");
            assert!(!s.message().is_empty());
            (s.code(), s.message().to_string())
        };
        let (c, m) = code(q.range(req("", 0, 1, vec![], 0)).await);
        assert_eq!(c, tonic::Code::InvalidArgument);
        assert!(m.contains("host_id"), "{m}");
        let (c, m) = code(q.range(req("h", 10, 1, vec![], 0)).await);
        assert_eq!(c, tonic::Code::InvalidArgument);
        assert!(m.contains("after end_ms"), "{m}");
        let (c, _) = code(
            q.range(req("h", 0, 1, vec!["no spaces allowed".into()], 0))
                .await,
        );
        assert_eq!(c, tonic::Code::InvalidArgument);
        let (c, m) = code(q.range(req("h", 0, 1, vec![], 5000)).await);
        assert_eq!(c, tonic::Code::InvalidArgument);
        assert!(m.contains("limit"), "{m}");
        let (c, m) = code(q.range(req("nobody", 0, now_ms(), vec![], 0)).await);
        assert_eq!(c, tonic::Code::NotFound);
        assert!(m.contains("unknown host"), "{m}");
        let s = q
            .latest(LatestRequest {
                metric_names: vec!["bad name".into()],
            })
            .await
            .expect_err("refused");
        assert_eq!(s.code(), tonic::Code::InvalidArgument);
        // Good queries still work afterwards.
        assert!(
            q.latest(LatestRequest::default())
                .await
                .unwrap()
                .into_inner()
                .snapshots
                .is_empty()
        );
    });
    let m = scrape(&broker.addr("admin"));
    assert!(
        metric(
            &m,
            "ringwatch_broker_queries_total{rpc=\"range\",code=\"invalid_argument\""
        ) >= 4.0,
        "{m}"
    );
    assert_eq!(
        metric(
            &m,
            "ringwatch_broker_queries_total{rpc=\"range\",code=\"not_found\""
        ),
        1.0,
        "{m}"
    );
}

/// A client that sends bytes that are not a protobuf message.
mod raw {
    use bytes::{Buf, BufMut};
    use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
    use tonic::codegen::http::uri::PathAndQuery;

    #[derive(Default)]
    struct RawCodec;
    struct RawEnc;
    struct RawDec;

    impl Encoder for RawEnc {
        type Item = Vec<u8>;
        type Error = tonic::Status;
        fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
            dst.put_slice(&item);
            Ok(())
        }
    }

    impl Decoder for RawDec {
        type Item = Vec<u8>;
        type Error = tonic::Status;
        fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, tonic::Status> {
            let n = src.remaining();
            Ok(Some(src.copy_to_bytes(n).to_vec()))
        }
    }

    impl Codec for RawCodec {
        type Encode = Vec<u8>;
        type Decode = Vec<u8>;
        type Encoder = RawEnc;
        type Decoder = RawDec;
        fn encoder(&mut self) -> RawEnc {
            RawEnc
        }
        fn decoder(&mut self) -> RawDec {
            RawDec
        }
    }

    /// Opens an ingest stream, sends garbage, returns how the stream ended.
    pub async fn send_garbage(url: &str) -> tonic::Status {
        let channel = tonic::transport::Endpoint::from_shared(url.to_string())
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut grpc = tonic::client::Grpc::new(channel);
        grpc.ready().await.unwrap();
        let (tx, rx) = tokio::sync::mpsc::channel::<Vec<u8>>(4);
        tx.send(vec![0xff, 0xff, 0xff, 0xff, 0x0f, 0x01])
            .await
            .unwrap();
        let resp = grpc
            .streaming(
                tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx)),
                PathAndQuery::from_static("/ringwatch.v1.Ingest/Stream"),
                RawCodec,
            )
            .await;
        let mut stream = match resp {
            Ok(r) => r.into_inner(),
            Err(s) => return s,
        };
        loop {
            match tokio::time::timeout(std::time::Duration::from_secs(10), stream.message()).await {
                Ok(Ok(Some(_))) => continue,
                Ok(Ok(None)) => return tonic::Status::ok("ended without error"),
                Ok(Err(s)) => return s,
                Err(_) => return tonic::Status::ok("no answer in 10 s"),
            }
        }
    }
}

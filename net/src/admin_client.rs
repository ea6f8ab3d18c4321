//! A client of a broker's admin HTTP API (`/api/cluster` and the membership operations): one
//! HTTP/1.1 request per call, with a connect timeout and an answer deadline. `ringwatch
//! cluster` and the operator both speak through it.

use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde_json::Value;

/// The largest answer read (a cluster of many brokers lists them all).
const MAX_ANSWER: usize = 4 << 20;

#[derive(Debug, thiserror::Error)]
pub enum AdminClientError {
    #[error("connecting to the broker's admin port {addr}: {reason}")]
    Connect { addr: String, reason: String },
    #[error("{method} {path}: {reason}")]
    Request {
        method: String,
        path: String,
        reason: String,
    },
    /// The broker answered with a refusal (4xx/5xx): its status and reason.
    #[error("the broker refused ({status}): {reason}")]
    Refused { status: u16, reason: String },
}

impl AdminClientError {
    /// The HTTP status of a refusal.
    pub fn status(&self) -> Option<u16> {
        match self {
            AdminClientError::Refused { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// One answer of the admin API.
#[derive(Debug, Clone)]
pub struct AdminAnswer {
    pub status: u16,
    pub body: Value,
}

impl AdminAnswer {
    /// The body of a 2xx answer; the broker's reason otherwise.
    pub fn ok(self) -> Result<Value, AdminClientError> {
        if (200..300).contains(&self.status) {
            return Ok(self.body);
        }
        let reason = self.body["error"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| self.body.to_string());
        Err(AdminClientError::Refused {
            status: self.status,
            reason,
        })
    }
}

/// Reaches one broker's admin port.
#[derive(Clone)]
pub struct AdminClient {
    /// host:port
    addr: String,
    token: Option<String>,
    connect_timeout: Duration,
    answer_timeout: Duration,
}

impl std::fmt::Debug for AdminClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminClient")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl AdminClient {
    /// A client of `addr` (`host:port`, an `http://` prefix is dropped) presenting `token`.
    pub fn new(addr: &str, token: Option<String>) -> AdminClient {
        AdminClient {
            addr: addr
                .trim_start_matches("http://")
                .trim_end_matches('/')
                .to_string(),
            token,
            connect_timeout: Duration::from_secs(10),
            // A membership change waits for Raft (a promotion for the learner to catch up).
            answer_timeout: Duration::from_secs(60),
        }
    }

    /// Shorter deadlines (the operator polls many brokers and must not hang on one).
    pub fn with_timeouts(mut self, connect: Duration, answer: Duration) -> AdminClient {
        self.connect_timeout = connect;
        self.answer_timeout = answer;
        self
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// `GET /api/cluster`.
    pub async fn cluster(&self) -> Result<Value, AdminClientError> {
        self.call("GET", "/api/cluster", None).await?.ok()
    }

    /// `path` of member `id`'s operation (`/promote`, `/drain`, or "" for the member).
    pub fn member_path(id: &str, action: &str) -> String {
        format!("/api/cluster/members/{}{action}", encode(id))
    }

    /// One request; its status and JSON body (a body that is not JSON becomes `{"error": text}`).
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<AdminAnswer, AdminClientError> {
        let addr = &self.addr;
        let failed = |reason: String| AdminClientError::Request {
            method: method.to_string(),
            path: path.to_string(),
            reason,
        };
        let stream = tokio::time::timeout(
            self.connect_timeout,
            tokio::net::TcpStream::connect(addr.as_str()),
        )
        .await
        .map_err(|_| AdminClientError::Connect {
            addr: addr.clone(),
            reason: format!("no connection within {:?}", self.connect_timeout),
        })?
        .map_err(|e| AdminClientError::Connect {
            addr: addr.clone(),
            reason: e.to_string(),
        })?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| failed(format!("HTTP handshake: {e}")))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let bytes = body.map(|b| b.to_string()).unwrap_or_default();
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", addr.as_str())
            .header("content-type", "application/json");
        if let Some(t) = &self.token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let req = req
            .body(Full::new(Bytes::from(bytes)))
            .map_err(|e| failed(format!("building the request: {e}")))?;
        let resp = tokio::time::timeout(self.answer_timeout, sender.send_request(req))
            .await
            .map_err(|_| failed(format!("no answer within {:?}", self.answer_timeout)))?
            .map_err(|e| failed(e.to_string()))?;
        let status = resp.status().as_u16();
        let limited = http_body_util::Limited::new(resp.into_body(), MAX_ANSWER);
        let body = tokio::time::timeout(self.answer_timeout, limited.collect())
            .await
            .map_err(|_| failed("the answer did not finish in time".into()))?
            .map_err(|e| failed(format!("reading the answer: {e}")))?
            .to_bytes();
        let body = serde_json::from_slice(&body).unwrap_or_else(
            |_| serde_json::json!({"error": String::from_utf8_lossy(&body).into_owned()}),
        );
        Ok(AdminAnswer { status, body })
    }
}

/// Percent-encodes a path segment (member ids are letters, digits, '-', '.', '_').
pub fn encode(id: &str) -> String {
    id.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_paths_are_encoded_and_refusals_carry_the_reason() {
        assert_eq!(
            AdminClient::member_path("broker-0", "/drain"),
            "/api/cluster/members/broker-0/drain"
        );
        assert_eq!(encode("a/b"), "a%2Fb");
        let refused = AdminAnswer {
            status: 409,
            body: serde_json::json!({"error": "not caught up"}),
        }
        .ok()
        .unwrap_err();
        assert_eq!(refused.status(), Some(409));
        assert!(refused.to_string().contains("not caught up"));
    }

    #[tokio::test]
    async fn a_closed_port_is_a_connect_error() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        drop(l);
        let c = AdminClient::new(&addr, None);
        assert!(matches!(
            c.cluster().await,
            Err(AdminClientError::Connect { .. })
        ));
    }
}

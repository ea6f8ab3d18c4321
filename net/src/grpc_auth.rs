//! The credential check in front of a tonic server: a tower layer that reads
//! `authorization: Bearer <token>` from every call, finds the role the called method needs (a
//! table the service gives, by gRPC path), and answers UNAUTHENTICATED (no, bad or expired
//! credential) or PERMISSION_DENIED (a good one of the wrong role) with the reason, before the
//! call reaches the service. A stream is checked once, when it opens. Every refusal is counted
//! in `grpc_auth_refused_total{reason}` and logged at a bounded rate.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use tonic::codegen::http;

use crate::throttle::Throttle;
use crate::token::{Role, TokenError, Verifier};

/// What a gRPC path needs: a role, or nothing (health checks, which say only "serving").
pub type Routes = fn(&str) -> Access;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Open,
    Needs(Role),
}

/// Refusals by reason.
#[derive(Clone, Default, Debug)]
pub struct AuthMetrics {
    refused: Family<[(&'static str, &'static str); 1], Counter>,
}

impl AuthMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "grpc_auth_refused",
            "gRPC calls refused by the credential check, by reason (missing, invalid, expired, \
             not_yet_valid, wrong_role)",
            self.refused.clone(),
        );
    }

    pub fn refused(&self, reason: &'static str) -> u64 {
        self.refused.get_or_create(&[("reason", reason)]).get()
    }
}

/// The check: `None` lets every call through (auth off).
#[derive(Clone)]
pub struct AuthLayer {
    inner: Option<Arc<Check>>,
}

struct Check {
    verifier: Verifier,
    routes: Routes,
    metrics: AuthMetrics,
    log: Throttle,
}

impl AuthLayer {
    pub fn new(verifier: Option<Verifier>, routes: Routes, metrics: AuthMetrics) -> AuthLayer {
        AuthLayer {
            inner: verifier.map(|verifier| {
                Arc::new(Check {
                    verifier,
                    routes,
                    metrics,
                    log: Throttle::default(),
                })
            }),
        }
    }
}

impl Check {
    fn check<B>(&self, req: &mut http::Request<B>) -> Result<(), tonic::Status> {
        let path = req.uri().path();
        let need = match (self.routes)(path) {
            Access::Open => return Ok(()),
            Access::Needs(role) => role,
        };
        let token = bearer(req.headers());
        match token.and_then(|t| self.verifier.check(t, need)) {
            Ok(claims) => {
                req.extensions_mut().insert(claims);
                Ok(())
            }
            Err(e) => {
                let reason = e.reason();
                self.metrics
                    .refused
                    .get_or_create(&[("reason", reason)])
                    .inc();
                if let Some(unlogged) = self.log.allow() {
                    tracing::warn!(
                        path,
                        reason,
                        error = %e,
                        not_logged_since_last = unlogged,
                        "gRPC call refused by the credential check (all are counted in \
                         grpc_auth_refused_total)"
                    );
                }
                Err(match e {
                    TokenError::WrongRole { .. } => tonic::Status::permission_denied(e.to_string()),
                    _ => tonic::Status::unauthenticated(e.to_string()),
                })
            }
        }
    }
}

/// The bearer token of `headers`: `Ok(None)` when there is no authorization header.
pub fn bearer(headers: &http::HeaderMap) -> Result<Option<&str>, TokenError> {
    let Some(value) = headers.get(http::header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| TokenError::Invalid("the authorization header is not text"))?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .ok_or(TokenError::Invalid(
            "the authorization header must be `Bearer <token>`",
        ))?;
    Ok(Some(token))
}

impl<S> tower::Layer<S> for AuthLayer {
    type Service = Authenticated<S>;

    fn layer(&self, inner: S) -> Authenticated<S> {
        Authenticated {
            inner,
            check: self.inner.clone(),
        }
    }
}

/// A service behind the credential check.
#[derive(Clone)]
pub struct Authenticated<S> {
    inner: S,
    check: Option<Arc<Check>>,
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S, B> tower::Service<http::Request<B>> for Authenticated<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        if let Some(check) = &self.check
            && let Err(status) = check.check(&mut req)
        {
            return Box::pin(async move { Ok(status.into_http()) });
        }
        Box::pin(self.inner.call(req))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const SECRET: &str = "a-secret-of-at-least-thirty-two-bytes!!";

    fn routes(path: &str) -> Access {
        if path.starts_with("/grpc.health.v1.Health/") {
            Access::Open
        } else if path.ends_with("/Write") {
            Access::Needs(Role::Ingest)
        } else {
            Access::Needs(Role::Query)
        }
    }

    fn req(path: &str, auth: Option<&str>) -> http::Request<()> {
        let mut b = http::Request::builder().uri(format!("http://x{path}"));
        if let Some(a) = auth {
            b = b.header("authorization", a);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn paths_get_their_role_and_refusals_are_counted_with_the_right_code() {
        let metrics = AuthMetrics::default();
        let layer = AuthLayer::new(
            Some(Verifier::new(&[SECRET.to_string()])),
            routes,
            metrics.clone(),
        );
        let check = layer.inner.unwrap();
        let ingest =
            crate::token::mint(SECRET, "a", &[Role::Ingest], Duration::from_secs(60)).unwrap();
        let auth = format!("Bearer {ingest}");
        assert!(
            check
                .check(&mut req("/grpc.health.v1.Health/Check", None))
                .is_ok()
        );
        let mut ok = req("/svc/Write", Some(&auth));
        assert!(check.check(&mut ok).is_ok());
        assert_eq!(
            ok.extensions().get::<crate::token::Claims>().unwrap().sub,
            "a"
        );
        let s = check.check(&mut req("/svc/Read", Some(&auth))).unwrap_err();
        assert_eq!(s.code(), tonic::Code::PermissionDenied);
        let s = check.check(&mut req("/svc/Read", None)).unwrap_err();
        assert_eq!(s.code(), tonic::Code::Unauthenticated);
        assert!(
            s.message().contains("broker-token --role query"),
            "{}",
            s.message()
        );
        let s = check
            .check(&mut req("/svc/Read", Some(&format!("Basic {ingest}"))))
            .unwrap_err();
        assert!(s.message().contains("Bearer <token>"), "{}", s.message());
        assert_eq!(metrics.refused("wrong_role"), 1);
        assert_eq!(metrics.refused("missing"), 1);
        assert_eq!(metrics.refused("invalid"), 1);
    }
}

//! How a client reaches brokers: TLS for `https://` endpoints (a CA to trust, a client
//! certificate for mutual TLS) and the credential sent on every call. Shared by the agent,
//! viz, loadgen, verify and `ringwatch query`, which flatten [`BrokerClientConfig`] into their
//! own config (`--broker-tls-ca`, `--broker-token-file`, …).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tonic::metadata::{AsciiMetadataValue, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

use crate::tls::{ClientTlsFiles, TlsError};

/// A channel to a broker that carries the credential on every call.
pub type GrpcChannel = InterceptedService<Channel, Bearer>;

/// How often a token file is read again (a rotated Kubernetes Secret is picked up within this).
const TOKEN_REREAD: Duration = Duration::from_secs(30);

/// TLS and credentials for talking to brokers. YAML: `broker_client: {tls_ca: ca.pem, …}`.
#[derive(
    Clone, Default, PartialEq, Eq, clap::Args, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(default, deny_unknown_fields)]
pub struct BrokerClientConfig {
    /// CA certificate (PEM) that signed the brokers' TLS certificates, for `https://` broker
    /// endpoints (default: the public web roots).
    #[arg(long = "broker-tls-ca", env = "RINGWATCH_CLIENT_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// This client's certificate (PEM), for brokers that require mutual TLS; with
    /// --broker-tls-key.
    #[arg(
        long = "broker-tls-cert",
        env = "RINGWATCH_CLIENT_TLS_CERT",
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,
    /// This client's private key (PEM) for --broker-tls-cert.
    #[arg(
        long = "broker-tls-key",
        env = "RINGWATCH_CLIENT_TLS_KEY",
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,
    /// The name the brokers' certificates are checked against, when it is not the endpoint's
    /// host (e.g. connecting by IP to a certificate issued for a DNS name).
    #[arg(
        long = "broker-tls-server-name",
        env = "RINGWATCH_CLIENT_TLS_SERVER_NAME"
    )]
    pub tls_server_name: Option<String>,
    /// A file holding the broker credential (mint one with `ringwatch broker-token`); read
    /// again every 30 s, so a rotated secret is picked up.
    #[arg(long = "broker-token-file", env = "RINGWATCH_CLIENT_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// The credential itself (prefer RINGWATCH_CLIENT_TOKEN or --broker-token-file: a flag
    /// shows in `ps`).
    #[arg(
        long = "broker-token",
        env = "RINGWATCH_CLIENT_TOKEN",
        hide_env_values = true,
        conflicts_with = "token_file"
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<ringwatch_core::config::Secret>,
}

impl BrokerClientConfig {
    /// Lays the fields `given` sets (flags, env) over these (a file's, or the defaults).
    pub fn overlay(&mut self, given: BrokerClientConfig) {
        use ringwatch_core::config::overlay_opt as set;
        set(&mut self.tls_ca, given.tls_ca);
        if given.tls_cert.is_some() {
            self.tls_cert = given.tls_cert;
            self.tls_key = given.tls_key;
        }
        set(&mut self.tls_server_name, given.tls_server_name);
        if given.token_file.is_some() {
            self.token_file = given.token_file;
            self.token = None;
        }
        if given.token.is_some() {
            self.token = given.token;
            self.token_file = None;
        }
    }
}

impl std::fmt::Debug for BrokerClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerClientConfig")
            .field("tls_ca", &self.tls_ca)
            .field("tls_cert", &self.tls_cert)
            .field("tls_key", &self.tls_key)
            .field("tls_server_name", &self.tls_server_name)
            .field("token_file", &self.token_file)
            .field("token", &self.token)
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("broker endpoint {url:?}: {reason}")]
    Endpoint { url: String, reason: String },
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("cannot read the broker token file {path}: {reason}")]
    Token { path: PathBuf, reason: String },
    #[error("the broker credential is not a valid header value (stray characters?)")]
    TokenText,
    #[error("--broker-tls-cert and --broker-tls-key go together")]
    HalfIdentity,
    #[error("cannot mint a credential: {0}")]
    Mint(String),
}

/// Builds endpoints and channels to brokers from a [`BrokerClientConfig`], checked once.
#[derive(Clone, Debug)]
pub struct Connector {
    tls: Option<ClientTlsConfig>,
    tls_given: bool,
    bearer: Bearer,
}

impl Connector {
    /// Reads and checks the TLS files and the token now, so a bad one fails at start.
    pub fn new(config: &BrokerClientConfig) -> Result<Connector, ClientError> {
        let identity = match (&config.tls_cert, &config.tls_key) {
            (Some(c), Some(k)) => Some((c.clone(), k.clone())),
            (None, None) => None,
            _ => return Err(ClientError::HalfIdentity),
        };
        let files = ClientTlsFiles {
            ca: config.tls_ca.clone(),
            identity,
            server_name: config.tls_server_name.clone(),
        };
        let tls_given = files != ClientTlsFiles::default();
        let tls = Some(crate::tls::client_config(&files)?);
        let bearer = Bearer::new(
            config.token.as_ref().map(|t| t.expose().to_string()),
            config.token_file.clone(),
        )?;
        Ok(Connector {
            tls,
            tls_given,
            bearer,
        })
    }

    /// No TLS settings and no credential: plain `http://` endpoints only.
    pub fn plain() -> Connector {
        Connector {
            tls: None,
            tls_given: false,
            bearer: Bearer::none(),
        }
    }

    /// An endpoint for `url`: `https://` gets TLS; `http://` is refused when TLS settings were
    /// given (a CA for a plaintext endpoint is a mistake worth saying).
    pub fn endpoint(&self, url: &str) -> Result<Endpoint, ClientError> {
        let bad = |reason: String| ClientError::Endpoint {
            url: url.to_string(),
            reason,
        };
        let endpoint = Endpoint::from_shared(url.to_string()).map_err(|e| bad(e.to_string()))?;
        match endpoint.uri().scheme_str() {
            Some("https") => {
                let tls = self
                    .tls
                    .clone()
                    .ok_or_else(|| bad("this client has no TLS settings".into()))?;
                endpoint
                    .tls_config(tls)
                    .map_err(|e| bad(format!("TLS: {e}")))
            }
            Some("http") if self.tls_given => Err(bad(
                "TLS settings are given (--broker-tls-*) but the endpoint is http://; use https://"
                    .into(),
            )),
            Some("http") => Ok(endpoint),
            _ => Err(bad("use http:// or https://".into())),
        }
    }

    /// The same TLS settings with `bearer` as the credential.
    pub fn with_bearer(mut self, bearer: Bearer) -> Connector {
        self.bearer = bearer;
        self
    }

    /// `channel` with the credential attached to every call.
    pub fn channel(&self, channel: Channel) -> GrpcChannel {
        InterceptedService::new(channel, self.bearer.clone())
    }
}

/// Adds `authorization: Bearer <token>` to every call (nothing when no credential is set).
#[derive(Clone, Debug)]
pub struct Bearer {
    source: Option<Arc<Source>>,
}

enum Source {
    Fixed(AsciiMetadataValue),
    /// Minted here from a signing secret, and again once half its lifetime has passed.
    Minted {
        secret: String,
        subject: String,
        roles: Vec<crate::token::Role>,
        ttl: Duration,
        cached: Mutex<(Instant, AsciiMetadataValue)>,
    },
    File {
        path: PathBuf,
        cached: Mutex<(Instant, AsciiMetadataValue)>,
    },
}

fn header(token: &str) -> Result<AsciiMetadataValue, ClientError> {
    MetadataValue::try_from(format!("Bearer {}", token.trim())).map_err(|_| ClientError::TokenText)
}

fn read_token(path: &PathBuf) -> Result<AsciiMetadataValue, ClientError> {
    let text = std::fs::read_to_string(path).map_err(|e| ClientError::Token {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    if text.trim().is_empty() {
        return Err(ClientError::Token {
            path: path.clone(),
            reason: "it is empty".into(),
        });
    }
    header(&text)
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Fixed(_) => f.write_str("Fixed(<redacted>)"),
            Source::Minted { subject, roles, .. } => f
                .debug_struct("Minted")
                .field("subject", subject)
                .field("roles", roles)
                .finish_non_exhaustive(),
            Source::File { path, .. } => f.debug_struct("File").field("path", path).finish(),
        }
    }
}

impl Bearer {
    pub fn none() -> Bearer {
        Bearer { source: None }
    }

    /// Credentials minted from `secret` for `subject` with `roles`, each valid for `ttl` and
    /// minted again once half of it has passed (a broker's credential to its peers).
    pub fn minted(
        secret: &str,
        subject: &str,
        roles: &[crate::token::Role],
        ttl: Duration,
    ) -> Result<Bearer, ClientError> {
        let token = crate::token::mint(secret, subject, roles, ttl)
            .map_err(|e| ClientError::Mint(e.to_string()))?;
        Ok(Bearer {
            source: Some(Arc::new(Source::Minted {
                secret: secret.to_string(),
                subject: subject.to_string(),
                roles: roles.to_vec(),
                ttl,
                cached: Mutex::new((Instant::now(), header(&token)?)),
            })),
        })
    }

    pub fn new(token: Option<String>, file: Option<PathBuf>) -> Result<Bearer, ClientError> {
        let source = match (token, file) {
            (Some(t), _) => Some(Source::Fixed(header(&t)?)),
            (None, Some(path)) => {
                let value = read_token(&path)?;
                Some(Source::File {
                    path,
                    cached: Mutex::new((Instant::now(), value)),
                })
            }
            (None, None) => None,
        };
        Ok(Bearer {
            source: source.map(Arc::new),
        })
    }

    fn value(&self) -> Option<AsciiMetadataValue> {
        match self.source.as_deref()? {
            Source::Fixed(v) => Some(v.clone()),
            Source::Minted {
                secret,
                subject,
                roles,
                ttl,
                cached,
            } => {
                let mut c = cached.lock().unwrap_or_else(|p| p.into_inner());
                if c.0.elapsed() >= *ttl / 2 {
                    match crate::token::mint(secret, subject, roles, *ttl)
                        .map_err(|e| ClientError::Mint(e.to_string()))
                        .and_then(|t| header(&t))
                    {
                        Ok(v) => *c = (Instant::now(), v),
                        Err(e) => tracing::warn!(error = %e, "keeping the last peer credential"),
                    }
                }
                Some(c.1.clone())
            }
            Source::File { path, cached } => {
                let mut c = cached.lock().unwrap_or_else(|p| p.into_inner());
                if c.0.elapsed() >= TOKEN_REREAD {
                    c.0 = Instant::now();
                    match read_token(path) {
                        Ok(v) => c.1 = v,
                        // Keep the last good one; the broker will say if it has gone stale.
                        Err(e) => tracing::warn!(error = %e, "keeping the last broker credential"),
                    }
                }
                Some(c.1.clone())
            }
        }
    }
}

impl Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = self.value() {
            req.metadata_mut().insert("authorization", v);
        }
        Ok(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_follow_the_scheme_and_tls_settings_need_https() {
        let plain = Connector::plain();
        assert!(plain.endpoint("http://127.0.0.1:1").is_ok());
        assert!(plain.endpoint("https://127.0.0.1:1").is_err());
        assert!(plain.endpoint("ftp://127.0.0.1:1").is_err());

        let dir = tempfile::tempdir().unwrap();
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, ck.cert.pem()).unwrap();
        let c = Connector::new(&BrokerClientConfig {
            tls_ca: Some(ca),
            ..Default::default()
        })
        .unwrap();
        assert!(c.endpoint("https://127.0.0.1:1").is_ok());
        let e = c.endpoint("http://127.0.0.1:1").unwrap_err().to_string();
        assert!(e.contains("use https://"), "{e}");
        // No settings: https uses the public roots.
        let d = Connector::new(&BrokerClientConfig::default()).unwrap();
        assert!(d.endpoint("https://example.test:443").is_ok());
        assert!(d.endpoint("http://example.test:80").is_ok());
    }

    #[test]
    fn the_token_file_is_sent_and_read_again_after_a_while() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t");
        std::fs::write(&path, "first\n").unwrap();
        let mut b = Bearer::new(None, Some(path.clone())).unwrap();
        let r = b.call(tonic::Request::new(())).unwrap();
        assert_eq!(r.metadata().get("authorization").unwrap(), "Bearer first");
        std::fs::write(&path, "second").unwrap();
        if let Some(Source::File { cached, .. }) = b.source.as_deref() {
            cached.lock().unwrap().0 = Instant::now() - TOKEN_REREAD;
        }
        let r = b.call(tonic::Request::new(())).unwrap();
        assert_eq!(r.metadata().get("authorization").unwrap(), "Bearer second");
        assert!(Bearer::new(None, Some(dir.path().join("none"))).is_err());
        assert!(Bearer::new(Some("bad\nvalue".into()), None).is_err());
    }
}

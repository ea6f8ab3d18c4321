//! TLS material for gRPC, read from PEM files: the server side (a certificate and key, and a CA
//! whose client certificates are required for mutual TLS) as a rustls config for
//! [`crate::grpc::incoming`], and the client side as tonic's `ClientTlsConfig`.
//! Everything is read and checked once, at start, so a bad file is a clear error then, not a
//! failed handshake later.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

pub use tokio_rustls::rustls::ServerConfig;

/// ALPN id of HTTP/2; tonic clients require it to be negotiated.
const ALPN_H2: &[u8] = b"h2";

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {what} {path}: {reason}")]
    Read {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("{what} {path} holds no {expected} in PEM form")]
    Empty {
        what: &'static str,
        path: PathBuf,
        expected: &'static str,
    },
    #[error("the TLS certificate and key do not go together or are unusable: {0}")]
    Config(String),
    #[error("the client CA {path} is unusable: {reason}")]
    ClientCa { path: PathBuf, reason: String },
}

/// Where a server's TLS material is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// When set, clients must present a certificate signed by this CA (mutual TLS).
    pub client_ca: Option<PathBuf>,
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError::Read {
        what,
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// Every certificate in `pem` (a chain, or a set of CAs), read from `path`.
fn parse_certificates(
    what: &'static str,
    path: &Path,
    pem: &[u8],
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Read {
            what,
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Empty {
            what,
            path: path.to_path_buf(),
            expected: "CERTIFICATE",
        });
    }
    Ok(certs)
}

/// Every certificate in the PEM file at `path`.
pub fn certificates(
    what: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    parse_certificates(what, path, &read(what, path)?)
}

/// The private key in `pem`, read from `path`.
fn parse_private_key(path: &Path, pem: &[u8]) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::Empty {
            what: "TLS key",
            path: path.to_path_buf(),
            expected: "PRIVATE KEY",
        },
        e => TlsError::Read {
            what: "TLS key",
            path: path.to_path_buf(),
            reason: e.to_string(),
        },
    })
}

fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    parse_private_key(path, &read("TLS key", path)?)
}

/// Writes `text` to `path`; a `private` file is readable by its owner only (also when an
/// earlier run left it with another mode).
pub fn write_file(path: &Path, text: &str, private: bool) -> std::io::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    std::io::Write::write_all(&mut f, text.as_bytes())
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The rustls server config for `files`: TLS 1.2 and 1.3, ALPN `h2`, client certificates
/// required when a client CA is given.
pub fn server_config(files: &ServerTlsFiles) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let chain = certificates("TLS certificate", &files.cert)?;
    let key = private_key(&files.key)?;
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in certificates("client CA", ca)? {
                roots.add(cert).map_err(|e| TlsError::ClientCa {
                    path: ca.clone(),
                    reason: e.to_string(),
                })?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider(),
            )
            .build()
            .map_err(|e| TlsError::ClientCa {
                path: ca.clone(),
                reason: e.to_string(),
            })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok(Arc::new(config))
}

/// What a client trusts and shows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientTlsFiles {
    /// CAs to trust; none: the public web roots.
    pub ca: Option<PathBuf>,
    /// The client's certificate and key, for brokers that require mutual TLS.
    pub identity: Option<(PathBuf, PathBuf)>,
    /// The name to check the server's certificate against, when it is not the URL's host.
    pub server_name: Option<String>,
}

/// tonic's client TLS config for `files`, checked: the files are read and parsed here.
pub fn client_config(
    files: &ClientTlsFiles,
) -> Result<tonic::transport::ClientTlsConfig, TlsError> {
    use tonic::transport::{Certificate, ClientTlsConfig, Identity};
    let mut config = ClientTlsConfig::new();
    // Each file read once: checked here, then handed to tonic as it is.
    config = match &files.ca {
        Some(path) => {
            let pem = read("TLS CA", path)?;
            parse_certificates("TLS CA", path, &pem)?;
            config.ca_certificate(Certificate::from_pem(pem))
        }
        None => config.with_webpki_roots(),
    };
    if let Some((cert, key)) = &files.identity {
        let (cert_pem, key_pem) = (read("TLS client certificate", cert)?, read("TLS key", key)?);
        parse_certificates("TLS client certificate", cert, &cert_pem)?;
        parse_private_key(key, &key_pem)?;
        config = config.identity(Identity::from_pem(cert_pem, key_pem));
    }
    if let Some(name) = &files.server_name {
        config = config.domain_name(name.clone());
    }
    Ok(config)
}

/// A CA and the certificates it signed, as PEM files: what a local run (`ringwatch up`) and
/// the tests use. A deployment brings its own (the operator or cert-manager make them).
#[derive(Debug, Clone)]
pub struct LocalCa {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

/// A CA and the certificates it signed, as PEM text.
#[derive(Clone)]
pub struct Pki {
    pub ca_cert: String,
    pub server_cert: String,
    pub server_key: String,
    pub client_cert: String,
    pub client_key: String,
}

impl std::fmt::Debug for Pki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pki { keys: <redacted> }")
    }
}

/// Makes a fresh CA named `ca_name`, a server certificate for `server_names` (DNS names or
/// IP addresses) and a client certificate, all signed by it.
pub fn generate_pki(ca_name: &str, server_names: &[String]) -> Result<Pki, TlsError> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let gen_err = |e: rcgen::Error| TlsError::Config(format!("cannot make certificates: {e}"));
    let ca_key = KeyPair::generate().map_err(gen_err)?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(gen_err)?;
    ca_params
        .distinguished_name
        .push(DnType::CommonName, ca_name);
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).map_err(gen_err)?;
    let issuer = Issuer::new(ca_params, ca_key);

    let leaf = |names: Vec<String>, cn: &str| -> Result<(String, String), TlsError> {
        let key = KeyPair::generate().map_err(gen_err)?;
        let mut params = CertificateParams::new(names).map_err(gen_err)?;
        params.distinguished_name.push(DnType::CommonName, cn);
        let cert = params.signed_by(&key, &issuer).map_err(gen_err)?;
        Ok((cert.pem(), key.serialize_pem()))
    };
    let (server_cert, server_key) = leaf(server_names.to_vec(), "ringwatch-broker")?;
    let (client_cert, client_key) = leaf(vec!["ringwatch-client".into()], "ringwatch-client")?;
    Ok(Pki {
        ca_cert: ca_cert.pem(),
        server_cert,
        server_key,
        client_cert,
        client_key,
    })
}

/// Makes a fresh CA in `dir`, a server certificate for `server_names` (DNS names or IP
/// addresses) and a client certificate, all signed by it; keys are written readable by the
/// owner only.
pub fn write_local_ca(dir: &Path, server_names: &[String]) -> Result<LocalCa, TlsError> {
    let write = |name: &str, text: &str, private: bool| -> Result<PathBuf, TlsError> {
        let path = dir.join(name);
        write_file(&path, text, private).map_err(|e| TlsError::Read {
            what: "generated file",
            path: path.clone(),
            reason: e.to_string(),
        })?;
        Ok(path)
    };
    std::fs::create_dir_all(dir).map_err(|e| TlsError::Read {
        what: "directory",
        path: dir.to_path_buf(),
        reason: e.to_string(),
    })?;
    let pki = generate_pki("Ringwatch local CA", server_names)?;
    Ok(LocalCa {
        ca: write("ca.pem", &pki.ca_cert, false)?,
        server_cert: write("broker.pem", &pki.server_cert, false)?,
        server_key: write("broker-key.pem", &pki.server_key, true)?,
        client_cert: write("client.pem", &pki.client_cert, false)?,
        client_key: write("client-key.pem", &pki.client_key, true)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn good_files_make_a_config_with_h2_and_bad_ones_say_which_file() {
        let dir = tempfile::tempdir().unwrap();
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let cert = write(dir.path(), "c.pem", &ck.cert.pem());
        let key = write(dir.path(), "k.pem", &ck.signing_key.serialize_pem());
        let files = ServerTlsFiles {
            cert: cert.clone(),
            key: key.clone(),
            client_ca: Some(cert.clone()),
        };
        let c = server_config(&files).unwrap();
        assert_eq!(c.alpn_protocols, vec![b"h2".to_vec()]);

        let missing = ServerTlsFiles {
            cert: dir.path().join("nope.pem"),
            ..files.clone()
        };
        let e = server_config(&missing).unwrap_err().to_string();
        assert!(
            e.contains("nope.pem") && e.contains("TLS certificate"),
            "{e}"
        );

        let swapped = ServerTlsFiles {
            cert: key.clone(),
            key: cert.clone(),
            client_ca: None,
        };
        let e = server_config(&swapped).unwrap_err().to_string();
        assert!(e.contains("no CERTIFICATE"), "{e}");

        let e = client_config(&ClientTlsFiles {
            ca: Some(key),
            ..Default::default()
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("TLS CA"), "{e}");
    }
}

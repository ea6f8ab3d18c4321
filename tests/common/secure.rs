//! TLS material and credentials for tests: a fresh CA with a broker and a client certificate
//! (the same generator `ringwatch up` uses), a broker auth secret, and credentials minted by the
//! real CLI (`ringwatch broker-token`), or crafted (expired, not yet valid) with jsonwebtoken.

use std::path::PathBuf;
use std::process::Command;

use ringwatch_net::tls::LocalCa;

use super::BIN;

pub struct Secure {
    pub dir: tempfile::TempDir,
    pub ca: LocalCa,
    pub secret: String,
    pub secret_file: PathBuf,
}

impl Secure {
    pub fn new() -> Secure {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = ringwatch_net::tls::write_local_ca(
            dir.path(),
            &["localhost".into(), "127.0.0.1".into()],
        )
        .expect("certificates");
        let secret = "test-secret-of-more-than-thirty-two-bytes".to_string();
        let secret_file = dir.path().join("auth-secret");
        std::fs::write(&secret_file, format!("{secret}\n")).expect("secret");
        Secure {
            dir,
            ca,
            secret,
            secret_file,
        }
    }

    fn s(p: &std::path::Path) -> String {
        p.to_str().expect("utf-8 path").to_string()
    }

    /// A broker's flags: TLS, credentials, and mutual TLS when `mutual`.
    pub fn broker_args(&self, mutual: bool) -> Vec<String> {
        let mut a = vec![
            "--tls-cert".into(),
            Self::s(&self.ca.server_cert),
            "--tls-key".into(),
            Self::s(&self.ca.server_key),
            "--auth-secret-file".into(),
            Self::s(&self.secret_file),
        ];
        if mutual {
            a.extend(["--tls-client-ca".into(), Self::s(&self.ca.ca)]);
        }
        a
    }

    /// A client's flags: trust the CA, show the client certificate, send `token`.
    pub fn client_args(&self, token: &str) -> Vec<String> {
        let file = self.token_file(token);
        vec![
            "--broker-tls-ca".into(),
            Self::s(&self.ca.ca),
            "--broker-tls-cert".into(),
            Self::s(&self.ca.client_cert),
            "--broker-tls-key".into(),
            Self::s(&self.ca.client_key),
            "--broker-token-file".into(),
            Self::s(&file),
        ]
    }

    /// `token` written to a file in the test's directory.
    pub fn token_file(&self, token: &str) -> PathBuf {
        let n = std::fs::read_dir(self.dir.path()).map_or(0, |d| d.count());
        let p = self.dir.path().join(format!("token-{n}"));
        std::fs::write(&p, token).expect("token file");
        p
    }

    /// A credential minted by `ringwatch broker-token --role …` with this secret.
    pub fn token(&self, roles: &[&str]) -> String {
        mint_with(&self.secret_file, roles)
    }

    /// A credential with these claims, signed with `secret`.
    pub fn crafted(secret: &str, claims: serde_json::Value) -> String {
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
        )
        .expect("encode")
    }

    /// A client connector for these certificates and `token` (None: no credential).
    pub fn connector(
        &self,
        token: Option<&str>,
        client_cert: bool,
    ) -> ringwatch_net::client::Connector {
        let mut c = ringwatch_net::client::BrokerClientConfig {
            tls_ca: Some(self.ca.ca.clone()),
            token: token.map(|t| t.to_string().into()),
            ..Default::default()
        };
        if client_cert {
            c.tls_cert = Some(self.ca.client_cert.clone());
            c.tls_key = Some(self.ca.client_key.clone());
        }
        ringwatch_net::client::Connector::new(&c).expect("connector")
    }
}

/// `ringwatch broker-token` with the secret in `file`.
pub fn mint_with(file: &std::path::Path, roles: &[&str]) -> String {
    let mut cmd = Command::new(BIN);
    cmd.args(["broker-token", "--auth-secret-file"]).arg(file);
    for r in roles {
        cmd.args(["--role", r]);
    }
    let out = cmd.output().expect("run broker-token");
    assert!(
        out.status.success(),
        "broker-token failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_string()
}

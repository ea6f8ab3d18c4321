//! Credentials for the brokers' gRPC services: HS256 JWTs that name what the caller may do.
//!
//! - `ingest` writes (an agent, loadgen);
//! - `query` reads (viz, `ringwatch query`, `verify`);
//! - `peer` is a broker talking to another one, and may do both.
//!
//! The audience is `ringwatch-broker`, so a viz dashboard token signed with the same secret
//! by mistake is still refused. A broker accepts tokens signed with any of its secrets (one per
//! line of the secret file), which lets a secret be rotated without a moment of refusals:
//! add the new one, re-mint, then drop the old one. `mint` signs with the first.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// The audience every broker credential carries.
pub const AUDIENCE: &str = "ringwatch-broker";
/// Longest lifetime `mint` gives (ten years: a credential in a Kubernetes Secret is rotated by
/// replacing the Secret, not by expiry).
pub const MAX_TTL: Duration = Duration::from_secs(3653 * 24 * 3600);
/// Longest credential read (a longer header is refused unread).
pub const MAX_TOKEN_LEN: usize = 4096;
/// Shortest secret accepted: HS256 needs at least its 256 bits to mean anything.
pub const MIN_SECRET_LEN: usize = 32;

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Writes: the ingest stream, registration, heartbeats, legacy reports.
    Ingest,
    /// Reads: range, latest, hosts, subscribe, legacy reads.
    Query,
    /// Another broker: everything.
    Peer,
    /// Changes the cluster through a broker's admin API (join, promote, drain, remove).
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Ingest => "ingest",
            Role::Query => "query",
            Role::Peer => "peer",
            Role::Admin => "admin",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Claims {
    pub sub: String,
    pub roles: Vec<Role>,
    pub aud: String,
    pub iat: u64,
    pub exp: u64,
}

impl Claims {
    /// Whether these claims allow what `need` allows.
    pub fn allows(&self, need: Role) -> bool {
        self.roles.iter().any(|&r| r == need || r == Role::Peer)
    }
}

/// Why a credential was refused; `reason()` is the label it is counted under.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error(
        "a credential is required: send `authorization: Bearer <token>` (mint one with \
         `ringwatch broker-token --role {0}`)"
    )]
    Missing(&'static str),
    #[error("the credential has expired; mint a new one")]
    Expired,
    #[error("the credential is not valid yet (its nbf is in the future)")]
    NotYetValid,
    #[error("invalid credential: {0}")]
    Invalid(&'static str),
    #[error("this credential's roles ({have}) may not do this: it needs the {need} role")]
    WrongRole { have: String, need: &'static str },
}

impl TokenError {
    pub fn reason(&self) -> &'static str {
        match self {
            TokenError::Missing(_) => "missing",
            TokenError::Expired => "expired",
            TokenError::NotYetValid => "not_yet_valid",
            TokenError::Invalid(_) => "invalid",
            TokenError::WrongRole { .. } => "wrong_role",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("cannot read the secret file {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("the secret file {0} holds no secret")]
    Empty(String),
    #[error(
        "a secret is {len} bytes; at least {MIN_SECRET_LEN} are needed (e.g. `head -c 32 /dev/urandom | base64`)"
    )]
    Short { len: usize },
    #[error("cannot mint: {0}")]
    Mint(String),
    #[error("give the secret or the secret file, not both")]
    Both,
    #[error("the secret is empty")]
    NoSecret,
}

/// The secrets of a secret file or variable: one per non-empty line, the first used to sign.
pub fn parse_secrets(text: &str) -> Result<Vec<String>, SecretError> {
    let secrets: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    if let Some(s) = secrets.iter().find(|s| s.len() < MIN_SECRET_LEN) {
        return Err(SecretError::Short { len: s.len() });
    }
    Ok(secrets)
}

/// [`parse_secrets`] of the file at `path`; at least one.
pub fn read_secrets(path: &Path) -> Result<Vec<String>, SecretError> {
    let text = std::fs::read_to_string(path).map_err(|e| SecretError::Read {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    let secrets = parse_secrets(&text)?;
    if secrets.is_empty() {
        return Err(SecretError::Empty(path.display().to_string()));
    }
    Ok(secrets)
}

/// The secrets given as a value (`--auth-secret`, `RINGWATCH_BROKER_AUTH_SECRET`) or a file;
/// `None` when neither is (auth off). Both, or an empty one, is an error.
pub fn load_secrets(
    value: Option<&str>,
    file: Option<&Path>,
) -> Result<Option<Vec<String>>, SecretError> {
    let secrets = match (value, file) {
        (Some(_), Some(_)) => return Err(SecretError::Both),
        (Some(v), None) => parse_secrets(v)?,
        (None, Some(path)) => read_secrets(path)?,
        (None, None) => return Ok(None),
    };
    if secrets.is_empty() {
        return Err(SecretError::NoSecret);
    }
    Ok(Some(secrets))
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A credential for `subject` with `roles`, valid for `ttl` (at most [`MAX_TTL`]).
pub fn mint(
    secret: &str,
    subject: &str,
    roles: &[Role],
    ttl: Duration,
) -> Result<String, SecretError> {
    if secret.len() < MIN_SECRET_LEN {
        return Err(SecretError::Short { len: secret.len() });
    }
    if roles.is_empty() {
        return Err(SecretError::Mint("give at least one role".into()));
    }
    if ttl.is_zero() || ttl > MAX_TTL {
        return Err(SecretError::Mint(format!(
            "the lifetime must be between 1 s and {} days",
            MAX_TTL.as_secs() / 86_400
        )));
    }
    let iat = now_secs();
    let claims = Claims {
        sub: subject.to_string(),
        roles: roles.to_vec(),
        aud: AUDIENCE.to_string(),
        iat,
        exp: iat + ttl.as_secs(),
    };
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .map_err(|e| SecretError::Mint(e.to_string()))
}

/// Checks credentials against a broker's secrets.
pub struct Verifier {
    keys: Vec<DecodingKey>,
    validation: Validation,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("keys", &self.keys.len())
            .finish()
    }
}

impl Verifier {
    pub fn new(secrets: &[String]) -> Verifier {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 30;
        validation.validate_nbf = true;
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "sub", "aud"]);
        Verifier {
            keys: secrets
                .iter()
                .map(|s| DecodingKey::from_secret(s.as_bytes()))
                .collect(),
            validation,
        }
    }

    /// The claims of `token` when it may act as `need`.
    pub fn check(&self, token: Option<&str>, need: Role) -> Result<Claims, TokenError> {
        let token = token
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(TokenError::Missing(need.as_str()))?;
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Invalid("longer than 4096 bytes"));
        }
        let mut last = TokenError::Invalid("no secret configured");
        for key in &self.keys {
            match jsonwebtoken::decode::<Claims>(token, key, &self.validation) {
                Ok(data) => {
                    let claims = data.claims;
                    if !claims.allows(need) {
                        let have = claims
                            .roles
                            .iter()
                            .map(|r| r.as_str())
                            .collect::<Vec<_>>()
                            .join(", ");
                        return Err(TokenError::WrongRole {
                            have,
                            need: need.as_str(),
                        });
                    }
                    return Ok(claims);
                }
                Err(e) => {
                    use jsonwebtoken::errors::ErrorKind as K;
                    last = match e.kind() {
                        // Signed by another secret: the next one may fit.
                        K::InvalidSignature => TokenError::Invalid("signature does not match"),
                        K::ExpiredSignature => return Err(TokenError::Expired),
                        K::ImmatureSignature => return Err(TokenError::NotYetValid),
                        K::InvalidAudience => {
                            return Err(TokenError::Invalid(
                                "not a broker credential (wrong audience)",
                            ));
                        }
                        K::MissingRequiredClaim(_) => {
                            return Err(TokenError::Invalid("a required claim is missing"));
                        }
                        K::InvalidAlgorithm => {
                            return Err(TokenError::Invalid("only HS256 is accepted"));
                        }
                        K::Json(_) => {
                            return Err(TokenError::Invalid("its claims are not a broker's"));
                        }
                        _ => return Err(TokenError::Invalid("not a well-formed JWT")),
                    };
                }
            }
        }
        Err(last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "a-secret-of-at-least-thirty-two-bytes!!";
    const B: &str = "another-secret-of-thirty-two-bytes-or-more";

    fn token(secret: &str, claims: serde_json::Value) -> String {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    #[test]
    fn roles_are_checked_and_peer_may_do_both() {
        let v = Verifier::new(&[A.to_string()]);
        let ingest = mint(A, "agent", &[Role::Ingest], Duration::from_secs(60)).unwrap();
        assert_eq!(v.check(Some(&ingest), Role::Ingest).unwrap().sub, "agent");
        let e = v.check(Some(&ingest), Role::Query).unwrap_err();
        assert_eq!(e.reason(), "wrong_role");
        assert!(e.to_string().contains("needs the query role"), "{e}");
        let peer = mint(A, "b1", &[Role::Peer], Duration::from_secs(60)).unwrap();
        assert!(v.check(Some(&peer), Role::Query).is_ok());
        assert!(v.check(Some(&peer), Role::Ingest).is_ok());
    }

    #[test]
    fn missing_wrong_expired_early_and_foreign_tokens_are_refused_by_reason() {
        let v = Verifier::new(&[A.to_string()]);
        assert_eq!(v.check(None, Role::Query).unwrap_err().reason(), "missing");
        assert_eq!(
            v.check(Some("  "), Role::Query).unwrap_err().reason(),
            "missing"
        );
        let other = mint(B, "x", &[Role::Query], Duration::from_secs(60)).unwrap();
        let e = v.check(Some(&other), Role::Query).unwrap_err();
        assert_eq!(e, TokenError::Invalid("signature does not match"));
        let now = now_secs();
        let expired = token(
            A,
            serde_json::json!({"sub": "x", "roles": ["query"], "aud": AUDIENCE, "iat": now - 7200, "exp": now - 3600}),
        );
        assert_eq!(
            v.check(Some(&expired), Role::Query).unwrap_err(),
            TokenError::Expired
        );
        let early = token(
            A,
            serde_json::json!({"sub": "x", "roles": ["query"], "aud": AUDIENCE, "iat": now, "nbf": now + 3600, "exp": now + 7200}),
        );
        assert_eq!(
            v.check(Some(&early), Role::Query).unwrap_err(),
            TokenError::NotYetValid
        );
        // A viz dashboard token (no audience, a `role`) signed with the same secret.
        let viz = token(
            A,
            serde_json::json!({"sub": "x", "role": "admin", "iat": now, "exp": now + 60}),
        );
        assert_eq!(
            v.check(Some(&viz), Role::Query).unwrap_err().reason(),
            "invalid"
        );
        assert_eq!(
            v.check(Some("abc.def"), Role::Query).unwrap_err().reason(),
            "invalid"
        );
        let long = "x".repeat(MAX_TOKEN_LEN + 1);
        assert_eq!(
            v.check(Some(&long), Role::Query).unwrap_err().reason(),
            "invalid"
        );
    }

    #[test]
    fn any_listed_secret_verifies_so_a_secret_can_be_rotated() {
        let v = Verifier::new(&parse_secrets(&format!("{B}\n\n{A}\n")).unwrap());
        for s in [A, B] {
            let t = mint(s, "x", &[Role::Query], Duration::from_secs(60)).unwrap();
            assert!(v.check(Some(&t), Role::Query).is_ok());
        }
    }

    #[test]
    fn secrets_come_from_a_value_or_a_file_not_both() {
        assert!(matches!(load_secrets(None, None), Ok(None)));
        assert_eq!(
            load_secrets(Some(A), None).unwrap(),
            Some(vec![A.to_string()])
        );
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("s");
        std::fs::write(&file, format!("{A}\n{B}\n")).unwrap();
        assert_eq!(
            load_secrets(None, Some(&file)).unwrap(),
            Some(vec![A.to_string(), B.to_string()])
        );
        assert!(matches!(
            load_secrets(Some(A), Some(&file)),
            Err(SecretError::Both)
        ));
        assert!(matches!(
            load_secrets(Some(" \n"), None),
            Err(SecretError::NoSecret)
        ));
        std::fs::write(&file, "\n").unwrap();
        assert!(matches!(
            load_secrets(None, Some(&file)),
            Err(SecretError::Empty(_))
        ));
    }

    #[test]
    fn short_secrets_and_bad_lifetimes_are_refused() {
        assert!(matches!(
            parse_secrets("short"),
            Err(SecretError::Short { len: 5 })
        ));
        assert!(mint(A, "x", &[Role::Query], Duration::ZERO).is_err());
        assert!(mint(A, "x", &[Role::Query], MAX_TTL + Duration::from_secs(1)).is_err());
        assert!(mint(A, "x", &[], Duration::from_secs(1)).is_err());
    }
}

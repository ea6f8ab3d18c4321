//! API tokens: HS256 JWTs with a role. `viewer` reads everything (API, WebSocket, QUIC);
//! `admin` also reads viz's own configuration. With no secret configured (a local run), every
//! caller is an anonymous admin and viz says so loudly at start.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// Longest lifetime `mint` gives a token.
pub const MAX_TTL: Duration = Duration::from_secs(366 * 24 * 3600);
/// Longest token accepted (a header or query parameter bigger than this is refused unread).
pub const MAX_TOKEN_LEN: usize = 4096;

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    clap::ValueEnum,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Admin => "admin",
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub role: Role,
    pub iat: u64,
    pub exp: u64,
}

/// Who a request comes from.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Identity {
    pub subject: String,
    pub role: Role,
    /// When the token expires (RFC 3339); null when auth is off.
    pub expires_at: Option<String>,
    /// The same as Unix ms, for live sessions to end when the token does.
    #[serde(skip)]
    pub expires_ms: Option<i64>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum AuthError {
    #[error(
        "a token is required: send Authorization: Bearer <token> (mint one with `ringwatch token`)"
    )]
    Missing,
    #[error("invalid token: {0}")]
    Invalid(String),
    #[error("role {have} may not do this; it needs {need}")]
    Forbidden {
        have: &'static str,
        need: &'static str,
    },
    #[error("cannot mint a token: {0}")]
    Mint(String),
}

impl AuthError {
    /// 401 for a missing or bad token, 403 for a good token with too small a role.
    pub fn status(&self) -> u16 {
        match self {
            AuthError::Forbidden { .. } => 403,
            _ => 401,
        }
    }
}

/// Checks tokens (or lets everyone in, when off).
pub struct Auth {
    key: Option<DecodingKey>,
    validation: Validation,
}

impl Auth {
    pub fn new(secret: Option<&str>) -> Auth {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 30;
        // A token that says it is not valid yet (`nbf` in the future, past the leeway) is
        // refused; jsonwebtoken checks `nbf` only when asked.
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Auth {
            key: secret.map(|s| DecodingKey::from_secret(s.as_bytes())),
            validation,
        }
    }

    pub fn required(&self) -> bool {
        self.key.is_some()
    }

    /// The caller behind `token`, if it may act as `need`.
    pub fn check(&self, token: Option<&str>, need: Role) -> Result<Identity, AuthError> {
        let Some(key) = &self.key else {
            return Ok(Identity {
                subject: "anonymous".into(),
                role: Role::Admin,
                expires_at: None,
                expires_ms: None,
            });
        };
        let token = token
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(AuthError::Missing)?;
        if token.len() > MAX_TOKEN_LEN {
            return Err(AuthError::Invalid(format!(
                "longer than {MAX_TOKEN_LEN} bytes"
            )));
        }
        let data = jsonwebtoken::decode::<Claims>(token, key, &self.validation)
            .map_err(|e| AuthError::Invalid(reason(&e).into()))?;
        let c = data.claims;
        // A token from elsewhere may claim to live for centuries; the cap `mint` keeps is kept
        // here too (and keeps the date printable).
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if c.exp > now + MAX_TTL.as_secs() + 60 {
            return Err(AuthError::Invalid(
                "it expires more than 366 days from now; mint a shorter-lived one".into(),
            ));
        }
        if c.role < need {
            return Err(AuthError::Forbidden {
                have: c.role.as_str(),
                need: need.as_str(),
            });
        }
        Ok(Identity {
            subject: c.sub,
            role: c.role,
            expires_at: Some(
                humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(c.exp))
                    .to_string(),
            ),
            expires_ms: Some(c.exp as i64 * 1000),
        })
    }
}

/// Why a token was refused, in words a user can act on (not the library's error names).
fn reason(e: &jsonwebtoken::errors::Error) -> &'static str {
    use jsonwebtoken::errors::ErrorKind as K;
    match e.kind() {
        K::ExpiredSignature => "it has expired; mint a new one with `ringwatch token`",
        K::ImmatureSignature => "it is not valid yet (its nbf is in the future)",
        K::InvalidSignature => "its signature does not match viz's secret",
        K::InvalidAlgorithm | K::InvalidAlgorithmName | K::UnsupportedAlgorithm => {
            "it is not signed with HS256"
        }
        K::MissingRequiredClaim(_) => "it lacks a required claim (sub and exp)",
        K::InvalidClaimFormat(_) | K::Json(_) => "its claims are not what viz expects",
        _ => "it is not a well-formed JWT",
    }
}

/// The token in an `Authorization: Bearer …` header value.
pub fn bearer(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

/// A signed token for `subject` with `role`, valid for `ttl`.
pub fn mint(secret: &str, subject: &str, role: Role, ttl: Duration) -> Result<String, AuthError> {
    if secret.len() < 32 {
        return Err(AuthError::Mint(format!(
            "the secret is {} bytes; HS256 needs at least 32",
            secret.len()
        )));
    }
    if ttl.is_zero() || ttl > MAX_TTL {
        return Err(AuthError::Mint(
            "ttl must be between 1 s and 366 days".into(),
        ));
    }
    if subject.is_empty() || subject.len() > 256 {
        return Err(AuthError::Mint("subject must be 1–256 bytes".into()));
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| AuthError::Mint(e.to_string()))?
        .as_secs();
    let claims = Claims {
        sub: subject.to_string(),
        role,
        iat: now,
        exp: now + ttl.as_secs(),
    };
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .map_err(|e| AuthError::Mint(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef-test";

    #[test]
    fn roles_tokens_and_refusals() {
        let auth = Auth::new(Some(SECRET));
        let viewer = mint(SECRET, "ana", Role::Viewer, Duration::from_secs(60)).unwrap();
        let admin = mint(SECRET, "bo", Role::Admin, Duration::from_secs(60)).unwrap();
        let who = auth.check(Some(&viewer), Role::Viewer).unwrap();
        assert_eq!((who.subject.as_str(), who.role), ("ana", Role::Viewer));
        assert!(who.expires_at.is_some());
        assert_eq!(
            auth.check(Some(&admin), Role::Admin).unwrap().role,
            Role::Admin
        );
        assert_eq!(
            auth.check(Some(&admin), Role::Viewer).unwrap().role,
            Role::Admin
        );
        let e = auth.check(Some(&viewer), Role::Admin).unwrap_err();
        assert_eq!(e.status(), 403);
        assert_eq!(
            auth.check(None, Role::Viewer).unwrap_err(),
            AuthError::Missing
        );
        // Signed with another secret, tampered with, or garbage: 401.
        let other = mint(&"z".repeat(40), "ana", Role::Admin, Duration::from_secs(60)).unwrap();
        assert_eq!(
            auth.check(Some(&other), Role::Viewer).unwrap_err().status(),
            401
        );
        let mut tampered = viewer.clone();
        tampered.insert(tampered.len() - 3, 'x');
        assert_eq!(
            auth.check(Some(&tampered), Role::Viewer)
                .unwrap_err()
                .status(),
            401
        );
        let e = auth.check(Some("nope"), Role::Viewer).unwrap_err();
        assert_eq!(e.status(), 401);
        assert_eq!(e.to_string(), "invalid token: it is not a well-formed JWT");
        let e = auth.check(Some(&other), Role::Viewer).unwrap_err();
        assert!(e.to_string().contains("signature does not match"), "{e}");
        assert_eq!(
            auth.check(Some(&"a".repeat(MAX_TOKEN_LEN + 1)), Role::Viewer)
                .unwrap_err()
                .status(),
            401
        );
    }

    #[test]
    fn an_expired_token_is_refused() {
        let auth = Auth::new(Some(SECRET));
        let claims = Claims {
            sub: "old".into(),
            role: Role::Admin,
            iat: 1_000,
            exp: 2_000,
        };
        let old = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap();
        let e = auth.check(Some(&old), Role::Viewer).unwrap_err();
        assert!(e.to_string().contains("xpired"), "{e}");
        // One that claims to live for ages is refused, not trusted (nor does it break the date).
        let forever = Claims {
            sub: "forever".into(),
            role: Role::Admin,
            iat: 1_000,
            exp: u64::MAX / 2,
        };
        let forever = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &forever,
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap();
        let e = auth.check(Some(&forever), Role::Viewer).unwrap_err();
        assert!(e.to_string().contains("366 days"), "{e}");
    }

    #[test]
    fn a_token_not_valid_yet_is_refused() {
        let auth = Auth::new(Some(SECRET));
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let with_nbf = |nbf: u64| {
            jsonwebtoken::encode(
                &Header::new(Algorithm::HS256),
                &serde_json::json!({
                    "sub": "early", "role": "viewer", "iat": now, "exp": now + 3600, "nbf": nbf
                }),
                &EncodingKey::from_secret(SECRET.as_bytes()),
            )
            .unwrap()
        };
        let e = auth
            .check(Some(&with_nbf(now + 600)), Role::Viewer)
            .unwrap_err();
        assert_eq!(e.status(), 401);
        assert!(e.to_string().contains("not valid yet"), "{e}");
        // Within the 30 s leeway (clocks differ a little), and in the past: accepted.
        assert!(auth.check(Some(&with_nbf(now + 10)), Role::Viewer).is_ok());
        assert!(auth.check(Some(&with_nbf(now - 60)), Role::Viewer).is_ok());
    }

    #[test]
    fn off_lets_everyone_in_and_mint_checks_its_input() {
        let auth = Auth::new(None);
        assert!(!auth.required());
        assert_eq!(auth.check(None, Role::Admin).unwrap().role, Role::Admin);
        assert!(mint("short", "a", Role::Viewer, Duration::from_secs(1)).is_err());
        assert!(mint(SECRET, "a", Role::Viewer, Duration::ZERO).is_err());
        assert!(mint(SECRET, "", Role::Viewer, Duration::from_secs(1)).is_err());
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer  abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
    }
}

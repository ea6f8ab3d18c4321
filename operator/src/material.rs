//! The credentials a MonitorCluster runs with: the brokers' token secret, the agents' and viz's
//! broker credentials, the secret that signs viz's API tokens, and the CA and broker
//! certificate. Each is read back from the Secret that holds it, or generated when there is
//! none (or the one there does not check); the user may bring their own through the spec
//! (`viz.authSecretRef`, `tls.secretRef`, e.g. cert-manager's), and then nothing is generated.
//! Rotation is changing a Secret: the next reconcile reads it, and the pods' config hash rolls
//! the tiers that use it.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ringwatch_net::tls::{Pki, generate_pki};
use ringwatch_net::token::{Role, Verifier, mint, parse_secrets};

use crate::crd::MonitorCluster;
use crate::names::{Names, Tier};

/// Secret data by Secret name, as read from the API server (values decoded to text).
pub type Existing = BTreeMap<String, BTreeMap<String, String>>;

/// How long a minted credential lives; it is minted again once less than [`RENEW_BEFORE`]
/// is left.
pub const TOKEN_TTL: Duration = Duration::from_secs(365 * 86_400);
pub const RENEW_BEFORE: Duration = Duration::from_secs(30 * 86_400);

#[derive(Debug, thiserror::Error)]
pub enum MaterialError {
    #[error("no randomness for a secret: {0}")]
    Random(String),
    #[error("cannot mint a credential: {0}")]
    Mint(String),
    #[error("cannot make certificates: {0}")]
    Tls(String),
}

/// Everything secret a cluster needs, resolved.
#[derive(Clone, PartialEq)]
pub struct Material {
    /// Signs and checks broker credentials (`<mc>-broker-auth`, key `secret`): one secret per
    /// line, the first signs.
    pub broker_auth: String,
    /// The agents' credential (role ingest).
    pub agent_token: String,
    /// viz's credential (role query).
    pub viz_token: String,
    /// Signs viz's API tokens, when the operator generates it (`<mc>-viz-auth`).
    pub viz_jwt: Option<String>,
    /// The generated CA and broker certificate (`<mc>-tls`), when the spec names no Secret.
    pub tls: Option<TlsMaterial>,
    /// A digest of each Secret the spec names (the user's: a cert-manager certificate, Redis
    /// credentials), so a renewed certificate or a changed password rolls the tiers that
    /// mount it.
    pub referenced: BTreeMap<String, String>,
}

impl std::fmt::Debug for Material {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Material { <redacted> }")
    }
}

/// A CA and the broker certificate it signed (the keys of a `kubernetes.io/tls` Secret plus
/// `ca.crt`, as cert-manager writes them).
#[derive(Clone, PartialEq)]
pub struct TlsMaterial {
    pub ca_crt: String,
    pub tls_crt: String,
    pub tls_key: String,
}

impl Material {
    /// The secret credentials are signed with (the first line of `broker_auth`).
    pub fn signing_secret(&self) -> &str {
        self.broker_auth
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .unwrap_or_default()
    }

    /// The material for `mc`: what `existing` holds where it checks, generated where not.
    pub fn resolve(
        mc: &MonitorCluster,
        names: &Names,
        existing: &Existing,
    ) -> Result<Material, MaterialError> {
        // Secrets and credentials are single lines (a trailing newline dropped); certificates
        // are kept as written.
        let pem = |secret: &str, key: &str| {
            existing
                .get(secret)
                .and_then(|d| d.get(key))
                .filter(|v| !v.trim().is_empty())
                .cloned()
        };
        let get = |secret: &str, key: &str| pem(secret, key).map(|v| v.trim().to_string());
        // One secret per line, as the brokers read the file: the first signs, every one is
        // accepted (rotation: add the new one second, let the brokers roll, swap, drop the old).
        let held = get(&names.auth_secret(), "secret")
            .and_then(|text| Some((parse_secrets(&text).ok()?, text)))
            .filter(|(lines, _)| !lines.is_empty());
        let (secrets, broker_auth) = match held {
            Some(found) => found,
            None => {
                let fresh = random_secret()?;
                (vec![fresh.clone()], fresh)
            }
        };
        let signing = secrets[0].clone();
        let verifier = Verifier::new(&secrets);
        let token = |tier: Tier, role: Role| -> Result<String, MaterialError> {
            let held = get(&names.token_secret(tier), "token");
            if let Some(t) = held.filter(|t| still_good(&verifier, t, role)) {
                return Ok(t);
            }
            let subject = format!("{}/{}", names.cluster, tier.as_str());
            mint(&signing, &subject, &[role], TOKEN_TTL)
                .map_err(|e| MaterialError::Mint(e.to_string()))
        };
        let agent_token = token(Tier::Agent, Role::Ingest)?;
        let viz_token = token(Tier::Viz, Role::Query)?;
        let viz_jwt = match mc.spec.viz.auth_secret_ref {
            Some(_) => None,
            None => Some(match get(&names.viz_auth_secret(), "jwt-secret") {
                Some(s) if s.len() >= 32 => s,
                _ => random_secret()?,
            }),
        };
        let tls = match (&mc.spec.tls.enabled, &mc.spec.tls.secret_ref) {
            (false, _) | (true, Some(_)) => None,
            (true, None) => {
                let held = (
                    pem(&names.tls_secret(), "ca.crt"),
                    pem(&names.tls_secret(), "tls.crt"),
                    pem(&names.tls_secret(), "tls.key"),
                );
                Some(match held {
                    (Some(ca_crt), Some(tls_crt), Some(tls_key)) => TlsMaterial {
                        ca_crt,
                        tls_crt,
                        tls_key,
                    },
                    _ => {
                        let pki = generate(names)?;
                        TlsMaterial {
                            ca_crt: pki.ca_cert,
                            tls_crt: pki.server_cert,
                            tls_key: pki.server_key,
                        }
                    }
                })
            }
        };
        let referenced = spec_secret_refs(mc)
            .into_iter()
            .filter_map(|name| {
                let data = existing.get(&name)?;
                let mut h = crc32fast::Hasher::new();
                for (k, v) in data {
                    h.update(k.as_bytes());
                    h.update(&[0]);
                    h.update(v.as_bytes());
                    h.update(&[0]);
                }
                Some((name, format!("{:08x}", h.finalize())))
            })
            .collect();
        Ok(Material {
            broker_auth,
            agent_token,
            viz_token,
            viz_jwt,
            tls,
            referenced,
        })
    }
}

/// The Secrets the spec names (the user's own), each once.
pub fn spec_secret_refs(mc: &MonitorCluster) -> Vec<String> {
    let spec = &mc.spec;
    let mut names: Vec<String> = [
        spec.tls.secret_ref.as_ref(),
        spec.viz.auth_secret_ref.as_ref(),
        spec.viz.tls_secret_ref.as_ref(),
        spec.broker
            .storage
            .redis
            .as_ref()
            .and_then(|r| r.secret_ref.as_ref()),
    ]
    .into_iter()
    .flatten()
    .map(|r| r.name.clone())
    .collect();
    names.sort();
    names.dedup();
    names
}

/// The names the broker certificate is valid for: every pod through the headless Service, the
/// ingest Service, short and long forms.
pub fn broker_dns_names(names: &Names) -> Vec<String> {
    let ns = &names.namespace;
    let mut out = Vec::new();
    for svc in [names.broker_peers(), names.broker_ingest()] {
        out.push(svc.clone());
        out.push(format!("{svc}.{ns}"));
        out.push(format!("{svc}.{ns}.svc"));
        out.push(format!("{svc}.{ns}.svc.cluster.local"));
    }
    out.push(format!("*.{}.{ns}.svc", names.broker_peers()));
    out.push(format!("*.{}.{ns}.svc.cluster.local", names.broker_peers()));
    out
}

fn generate(names: &Names) -> Result<Pki, MaterialError> {
    generate_pki(
        &format!("Ringwatch {}/{} CA", names.namespace, names.cluster),
        &broker_dns_names(names),
    )
    .map_err(|e| MaterialError::Tls(e.to_string()))
}

/// A held credential is kept while it checks against the secret, has the role and has more
/// than [`RENEW_BEFORE`] to live.
fn still_good(verifier: &Verifier, token: &str, role: Role) -> bool {
    let Ok(claims) = verifier.check(Some(token), role) else {
        return false;
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    claims.exp > now + RENEW_BEFORE.as_secs()
}

/// 32 random bytes as 64 hex digits.
fn random_secret() -> Result<String, MaterialError> {
    let mut raw = [0u8; 32];
    getrandom::fill(&mut raw).map_err(|e| MaterialError::Random(e.to_string()))?;
    Ok(raw.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::MonitorClusterSpec;

    fn mc() -> MonitorCluster {
        MonitorCluster::new("mon", MonitorClusterSpec::default())
    }

    fn as_existing(m: &Material, names: &Names) -> Existing {
        let mut e = Existing::new();
        let mut put = |s: String, k: &str, v: &str| {
            e.entry(s).or_default().insert(k.to_string(), v.to_string());
        };
        put(names.auth_secret(), "secret", &m.broker_auth);
        put(names.token_secret(Tier::Agent), "token", &m.agent_token);
        put(names.token_secret(Tier::Viz), "token", &m.viz_token);
        if let Some(j) = &m.viz_jwt {
            put(names.viz_auth_secret(), "jwt-secret", j);
        }
        if let Some(t) = &m.tls {
            put(names.tls_secret(), "ca.crt", &t.ca_crt);
            put(names.tls_secret(), "tls.crt", &t.tls_crt);
            put(names.tls_secret(), "tls.key", &t.tls_key);
        }
        e
    }

    #[test]
    fn generated_once_then_read_back_unchanged() {
        let names = Names::new("mon", "obs");
        let first = Material::resolve(&mc(), &names, &Existing::new()).unwrap();
        assert_eq!(first.broker_auth.len(), 64);
        assert!(
            first
                .tls
                .as_ref()
                .unwrap()
                .ca_crt
                .contains("BEGIN CERTIFICATE")
        );
        let verifier = Verifier::new(std::slice::from_ref(&first.broker_auth));
        assert!(
            verifier
                .check(Some(&first.agent_token), Role::Ingest)
                .is_ok()
        );
        assert!(
            verifier
                .check(Some(&first.agent_token), Role::Admin)
                .is_err()
        );
        assert!(verifier.check(Some(&first.viz_token), Role::Query).is_ok());
        let again = Material::resolve(&mc(), &names, &as_existing(&first, &names)).unwrap();
        assert!(again == first, "a second reconcile changes nothing");
    }

    #[test]
    fn a_rotated_secret_reissues_the_credentials_and_a_bad_token_is_replaced() {
        let names = Names::new("mon", "obs");
        let first = Material::resolve(&mc(), &names, &Existing::new()).unwrap();
        let mut held = as_existing(&first, &names);
        let rotated = "r".repeat(40);
        held.get_mut(&names.auth_secret())
            .unwrap()
            .insert("secret".into(), rotated.clone());
        let next = Material::resolve(&mc(), &names, &held).unwrap();
        assert_eq!(next.broker_auth, rotated);
        let verifier = Verifier::new(std::slice::from_ref(&rotated));
        assert!(
            verifier
                .check(Some(&next.agent_token), Role::Ingest)
                .is_ok()
        );
        assert_ne!(next.agent_token, first.agent_token);
        assert!(next.tls == first.tls, "certificates untouched");
        // A short secret is not used.
        held.get_mut(&names.auth_secret())
            .unwrap()
            .insert("secret".into(), "short".into());
        let fresh = Material::resolve(&mc(), &names, &held).unwrap();
        assert_eq!(fresh.broker_auth.len(), 64);
    }

    #[test]
    fn a_secret_rotated_in_two_lines_keeps_every_credential_valid() {
        let names = Names::new("mon", "obs");
        let first = Material::resolve(&mc(), &names, &Existing::new()).unwrap();
        let mut held = as_existing(&first, &names);
        let new = "n".repeat(40);
        // Step 1: the new secret second. The credentials still check, and are kept.
        held.get_mut(&names.auth_secret())
            .unwrap()
            .insert("secret".into(), format!("{}\n{new}\n", first.broker_auth));
        let step1 = Material::resolve(&mc(), &names, &held).unwrap();
        assert_eq!(step1.agent_token, first.agent_token);
        assert_eq!(step1.signing_secret(), first.broker_auth);
        // Step 2: swapped. Held credentials still check against the old line; new ones would
        // be signed with the new secret.
        held.get_mut(&names.auth_secret())
            .unwrap()
            .insert("secret".into(), format!("{new}\n{}", first.broker_auth));
        let step2 = Material::resolve(&mc(), &names, &held).unwrap();
        assert_eq!(step2.signing_secret(), new);
        assert_eq!(step2.agent_token, first.agent_token);
        // Step 3: the old one dropped: the credentials are minted again with the new one.
        held.get_mut(&names.auth_secret())
            .unwrap()
            .insert("secret".into(), new.clone());
        let step3 = Material::resolve(&mc(), &names, &held).unwrap();
        assert_ne!(step3.agent_token, first.agent_token);
        let verifier = Verifier::new(std::slice::from_ref(&new));
        assert!(
            verifier
                .check(Some(&step3.agent_token), Role::Ingest)
                .is_ok()
        );
    }

    #[test]
    fn secrets_the_user_brings_are_not_generated() {
        let names = Names::new("mon", "obs");
        let mut m = mc();
        m.spec.viz.auth_secret_ref = Some(crate::crd::SecretRef {
            name: "mine".into(),
        });
        m.spec.tls.secret_ref = Some(crate::crd::SecretRef {
            name: "cm-issued".into(),
        });
        let got = Material::resolve(&m, &names, &Existing::new()).unwrap();
        assert!(got.viz_jwt.is_none() && got.tls.is_none());
        m.spec.tls = crate::crd::TlsSpec {
            enabled: false,
            secret_ref: None,
        };
        assert!(
            Material::resolve(&m, &names, &Existing::new())
                .unwrap()
                .tls
                .is_none()
        );
    }
}

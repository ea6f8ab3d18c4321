//! What every service's configuration shares: a secret that never prints, durations written the
//! way people write them (`500ms`, `30s`, `7d`, with `humantime_serde` on the field and a string
//! in the JSON schema), and reading a secret from a mounted file.
//!
//! A service's config is nested serde types whose `Default` is the one place its defaults live;
//! the same types derive `JsonSchema`, so the operator's CRD embeds them; flags are a thin clap
//! layer of `Option`s laid over a config read from YAML.

use std::borrow::Cow;
use std::fmt;
use std::path::Path;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// What a secret shows wherever it would be printed or serialised.
pub const REDACTED: &str = "<redacted>";

/// A secret (a signing key, a password, a credential): used, compared, never shown. `Debug`
/// and `Display` print `<redacted>`, and so does serialising it, so a config dumped to a log or
/// an admin endpoint says a secret is set and never what it is. It is read from a string.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret itself, for the one place that uses it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Its length in bytes (to check it is long enough without showing it).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Secret {
        Secret(s)
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Secret {
        Secret(s.to_string())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({REDACTED})")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(REDACTED)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Secret, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Secret, Self::Err> {
        Ok(Secret(s.to_string()))
    }
}

impl JsonSchema for Secret {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> Cow<'static, str> {
        "Secret".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "writeOnly": true,
            "description": "A secret: read, never shown (prefer its *_file form, a mounted Secret)."
        })
    }
}

/// Lays a flag over a config field: `to` becomes `given` when one was given (the `Args::apply`
/// of every service).
pub fn overlay<T>(to: &mut T, given: Option<T>) {
    if let Some(v) = given {
        *to = v;
    }
}

/// [`overlay`] for an optional field: set when one was given, else left as it is.
pub fn overlay_opt<T>(to: &mut Option<T>, given: Option<T>) {
    if given.is_some() {
        *to = given;
    }
}

/// A secret from a file (a mounted Kubernetes Secret), without the one trailing newline editors
/// and `echo` add.
pub fn read_secret_file(path: &Path) -> std::io::Result<Secret> {
    let mut s = std::fs::read_to_string(path)?;
    if s.ends_with('\n') {
        s.pop();
        if s.ends_with('\r') {
            s.pop();
        }
    }
    Ok(Secret(s))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[derive(Serialize, Deserialize, JsonSchema, Debug, PartialEq)]
    struct Sample {
        #[serde(with = "humantime_serde")]
        #[schemars(with = "String")]
        every: Duration,
        key: Secret,
    }

    #[test]
    fn a_secret_never_prints_nor_serialises_and_reads_from_a_string() {
        let s: Sample =
            serde_json::from_str(r#"{"every": "1m 30s", "key": "hunter2hunter2"}"#).expect("reads");
        assert_eq!(s.every, Duration::from_secs(90));
        assert_eq!(s.key.expose(), "hunter2hunter2");
        for shown in [
            format!("{s:?}"),
            format!("{}", s.key),
            serde_json::to_string(&s).expect("json"),
        ] {
            assert!(!shown.contains("hunter2"), "{shown}");
            assert!(shown.contains(REDACTED), "{shown}");
        }
        assert_eq!(
            serde_json::to_value(&s).expect("json")["every"],
            "1m 30s",
            "durations are written as people write them"
        );
        let e = serde_json::from_str::<Sample>(r#"{"every": "soon", "key": "k"}"#).unwrap_err();
        assert!(
            e.to_string().contains("\"soon\", expected a duration"),
            "{e}"
        );
    }

    #[test]
    fn the_schema_says_strings() {
        let schema = serde_json::to_value(schemars::schema_for!(Sample)).expect("schema");
        let props = &schema["properties"];
        assert_eq!(props["every"]["type"], "string");
        assert_eq!(props["key"]["type"], "string");
        assert_eq!(props["key"]["writeOnly"], true);
    }

    #[test]
    fn a_secret_file_loses_one_trailing_newline() {
        let dir = std::env::temp_dir().join(format!("rw-core-secret-{}", std::process::id()));
        std::fs::write(&dir, "k".repeat(40) + "\r\n").expect("write");
        assert_eq!(
            read_secret_file(&dir).expect("read").expose(),
            "k".repeat(40)
        );
        let _ = std::fs::remove_file(&dir);
    }
}

//! One typed config per service from three sources: a YAML file, environment variables and
//! flags. Precedence: flag > env > file > default. Field names in the file equal flag ids
//! (`interval_secs:` ↔ `--interval-secs`), so merging is generic over the config type.

use std::path::Path;

use anyhow::{Context, bail};
use clap::ArgMatches;
use clap::parser::ValueSource;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Reads a YAML file as a JSON value (an empty file is an empty mapping).
pub fn read_yaml(path: &Path) -> anyhow::Result<serde_json::Value> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    if text.trim().is_empty() {
        return Ok(serde_json::json!({}));
    }
    let v: serde_json::Value = serde_yaml_ng::from_str(&text)
        .with_context(|| format!("config file {} is not valid YAML", path.display()))?;
    if !v.is_object() {
        bail!(
            "config file {} must be a YAML mapping of field: value",
            path.display()
        );
    }
    Ok(v)
}

/// Overlays the values given on the command line or in the environment (per `matches`) onto
/// `file` (a mapping from a YAML file) and returns the result typed.
pub fn merge<C: Serialize + DeserializeOwned>(
    parsed: &C,
    matches: &ArgMatches,
    file: Option<serde_json::Value>,
    what: &str,
) -> anyhow::Result<C> {
    let Some(mut base) = file else {
        return serde_json::from_value(serde_json::to_value(parsed)?).context("config");
    };
    let given = serde_json::to_value(parsed)?;
    let (Some(base_map), Some(given_map)) = (base.as_object_mut(), given.as_object()) else {
        bail!("{what} config must be a mapping");
    };
    overlay(base_map, given_map, matches);
    serde_json::from_value(base)
        .with_context(|| format!("invalid {what} config (unknown field or wrong type)"))
}

fn explicit(matches: &ArgMatches, id: &str) -> bool {
    matches!(
        matches
            .try_get_raw(id)
            .ok()
            .and_then(|_| matches.value_source(id)),
        Some(ValueSource::CommandLine | ValueSource::EnvVariable)
    )
}

/// Puts each given value into `base` where the file has none or a flag or env variable set it.
/// A nested mapping (a flattened group of flags, e.g. `broker_client`) is merged field by field,
/// its fields being flag ids too.
fn overlay(
    base: &mut serde_json::Map<String, serde_json::Value>,
    given: &serde_json::Map<String, serde_json::Value>,
    matches: &ArgMatches,
) {
    for (key, value) in given {
        if let (Some(inner), Some(serde_json::Value::Object(b))) =
            (value.as_object(), base.get_mut(key))
        {
            overlay(b, inner, matches);
            continue;
        }
        if explicit(matches, key) || !base.contains_key(key) {
            base.insert(key.clone(), value.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{Args, Command, FromArgMatches};
    use serde::Deserialize;

    #[derive(Debug, Args, Serialize, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Demo {
        #[arg(long, default_value_t = 5)]
        interval_secs: u64,
        #[arg(long, default_value = "a")]
        name: String,
        #[command(flatten)]
        #[serde(default)]
        inner: Inner,
    }

    #[derive(Debug, Default, Args, Serialize, Deserialize, PartialEq)]
    #[serde(default, deny_unknown_fields)]
    struct Inner {
        #[arg(long = "inner-a")]
        a: Option<String>,
        #[arg(long = "inner-b")]
        b: Option<String>,
    }

    fn parse(args: &[&str]) -> (Demo, ArgMatches) {
        let m = Demo::augment_args(Command::new("demo")).get_matches_from(args);
        (Demo::from_arg_matches(&m).unwrap(), m)
    }

    #[test]
    fn flags_beat_the_file_and_the_file_beats_defaults() {
        let (d, m) = parse(&["demo", "--name", "flag"]);
        let file = serde_json::json!({"interval_secs": 9, "name": "file"});
        let c: Demo = merge(&d, &m, Some(file), "demo").unwrap();
        assert_eq!(
            c,
            Demo {
                interval_secs: 9,
                name: "flag".into(),
                inner: Inner::default(),
            }
        );
    }

    #[test]
    fn a_flattened_group_is_merged_field_by_field() {
        let (d, m) = parse(&["demo", "--inner-a", "flag"]);
        let file = serde_json::json!({"inner": {"a": "file", "b": "file"}});
        let c: Demo = merge(&d, &m, Some(file), "demo").unwrap();
        assert_eq!(c.inner.a.as_deref(), Some("flag"));
        assert_eq!(c.inner.b.as_deref(), Some("file"));
        let (d, m) = parse(&["demo"]);
        let bad = serde_json::json!({"inner": {"c": 1}});
        assert!(merge(&d, &m, Some(bad), "demo").is_err());
    }

    #[test]
    fn unknown_fields_in_the_file_are_errors() {
        let (d, m) = parse(&["demo"]);
        let err = merge(&d, &m, Some(serde_json::json!({"intervall": 1})), "demo").unwrap_err();
        assert!(format!("{err:#}").contains("unknown field"), "{err:#}");
    }
}

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
    for (key, value) in given_map {
        let explicit = matches!(
            matches.try_get_raw(key).ok().and(matches.value_source(key)),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        );
        if explicit || !base_map.contains_key(key) {
            base_map.insert(key.clone(), value.clone());
        }
    }
    serde_json::from_value(base)
        .with_context(|| format!("invalid {what} config (unknown field or wrong type)"))
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
                name: "flag".into()
            }
        );
    }

    #[test]
    fn unknown_fields_in_the_file_are_errors() {
        let (d, m) = parse(&["demo"]);
        let err = merge(&d, &m, Some(serde_json::json!({"intervall": 1})), "demo").unwrap_err();
        assert!(format!("{err:#}").contains("unknown field"), "{err:#}");
    }
}

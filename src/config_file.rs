//! Reading a service's YAML config file. Each service's typed config (nested serde types whose
//! `Default` holds the defaults) is read from it, then its flags and env variables (a thin clap
//! `Args` of options) are laid over it: flag > env > file > default.

use std::path::Path;

use anyhow::{Context, bail};

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_a_mapping_and_an_empty_one_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.yaml");
        std::fs::write(&empty, "  \n").unwrap();
        assert_eq!(read_yaml(&empty).unwrap(), serde_json::json!({}));
        let list = dir.path().join("list.yaml");
        std::fs::write(&list, "- a\n- b\n").unwrap();
        assert!(format!("{:#}", read_yaml(&list).unwrap_err()).contains("mapping"));
        let bad = dir.path().join("bad.yaml");
        std::fs::write(&bad, "a: [\n").unwrap();
        assert!(format!("{:#}", read_yaml(&bad).unwrap_err()).contains("not valid YAML"));
        let ok = dir.path().join("ok.yaml");
        std::fs::write(&ok, "storage: {retention: 1d}\n").unwrap();
        assert_eq!(read_yaml(&ok).unwrap()["storage"]["retention"], "1d");
    }
}

//! What the broker accepts, shared with the agent so it refuses bad configuration at start
//! instead of being refused by every broker at run time. Each check returns the reason a
//! person can act on, or None.

pub const MAX_HOST_ID: usize = 253;
pub const MAX_METRIC_NAME: usize = 200;
pub const MAX_LABELS: usize = 64;
pub const MAX_LABEL_KEY: usize = 63;
pub const MAX_LABEL_VALUE: usize = 256;
/// Most snapshots in one ingest batch by default.
pub const DEFAULT_MAX_BATCH: usize = 1024;

fn id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
}

fn shown(s: &str) -> String {
    s.chars().take(64).collect()
}

/// A host id: 1–253 characters of `[A-Za-z0-9._-]` (a DNS name fits).
pub fn host_id_problem(id: &str) -> Option<String> {
    if id.is_empty() {
        return Some("host_id is empty".into());
    }
    (id.len() > MAX_HOST_ID || !id.chars().all(id_char)).then(|| {
        format!(
            "host_id {:?} must be 1–{MAX_HOST_ID} characters of [A-Za-z0-9._-]",
            shown(id)
        )
    })
}

/// A metric name: 1–200 characters of `[A-Za-z0-9._:-]`.
pub fn metric_name_problem(name: &str) -> Option<String> {
    (name.is_empty()
        || name.len() > MAX_METRIC_NAME
        || !name.chars().all(|c| id_char(c) || c == ':'))
    .then(|| {
        format!(
            "metric name {:?} must be 1–{MAX_METRIC_NAME} characters of [A-Za-z0-9._:-]",
            shown(name)
        )
    })
}

/// Labels: at most 64; keys 1–63 characters of `[A-Za-z0-9._/-]`; values at most 256
/// characters without control characters.
pub fn labels_problem<'a>(
    labels: impl ExactSizeIterator<Item = (&'a str, &'a str)>,
) -> Option<String> {
    if labels.len() > MAX_LABELS {
        return Some(format!("{} labels; at most {MAX_LABELS}", labels.len()));
    }
    for (k, v) in labels {
        if k.is_empty() || k.len() > MAX_LABEL_KEY || !k.chars().all(|c| id_char(c) || c == '/') {
            return Some(format!(
                "label key {:?} must be 1–{MAX_LABEL_KEY} characters of [A-Za-z0-9._/-]",
                shown(k)
            ));
        }
        if v.len() > MAX_LABEL_VALUE || v.chars().any(char::is_control) {
            return Some(format!(
                "label {k:?}: value must be at most {MAX_LABEL_VALUE} characters without control characters"
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rules() {
        assert!(host_id_problem("node-1.example.com").is_none());
        assert!(host_id_problem("").unwrap().contains("empty"));
        assert!(host_id_problem("a b").is_some());
        assert!(metric_name_problem("net.eth0:rx").is_none());
        assert!(metric_name_problem("cpu usage").is_some());
        assert!(labels_problem([("topology.kubernetes.io/zone", "a")].into_iter()).is_none());
        assert!(labels_problem([("team:x", "1")].into_iter()).is_some());
        assert!(labels_problem([("k", "\u{7}")].into_iter()).is_some());
    }
}

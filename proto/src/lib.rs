//! The Ringwatch gRPC contract (`proto/ringwatch/v1/ringwatch.proto`), compiled by build.rs
//! with a vendored protoc, plus small helpers both ends of the wire use.

#[allow(clippy::all, missing_docs)]
pub mod v1 {
    tonic::include_proto!("ringwatch.v1");
}

pub use v1::*;

/// Whether `name` is selected by `patterns`: empty selects everything; a pattern ending in
/// `*` matches by prefix, any other pattern matches exactly.
pub fn name_selected(patterns: &[String], name: &str) -> bool {
    patterns.is_empty()
        || patterns.iter().any(|p| match p.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix),
            None => p == name,
        })
}

impl Unit {
    /// A short human suffix for tables.
    pub fn suffix(self) -> &'static str {
        match self {
            Unit::Unspecified => "",
            Unit::Percent => "%",
            Unit::Bytes => "B",
            Unit::BytesPerSecond => "B/s",
            Unit::Count => "",
            Unit::PerSecond => "/s",
            Unit::Seconds => "s",
            Unit::Load => "",
            Unit::Hertz => "Hz",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_selection_by_exact_and_prefix() {
        let pats = vec!["cpu.*".to_string(), "mem.used".to_string()];
        assert!(name_selected(&pats, "cpu.total.usage"));
        assert!(name_selected(&pats, "mem.used"));
        assert!(!name_selected(&pats, "mem.used_percent"));
        assert!(!name_selected(&pats, "net.eth0.rx"));
        assert!(name_selected(&[], "anything"));
    }
}

//! Crash points for tests: when `RINGWATCH_FAILPOINT` names a point, the process aborts there,
//! as `kill -9` would (no unwinding, no flush), so tests can stop a broker at an exact step of
//! a block cut. Unset (always, outside tests), a hit is one load of a cached flag.

use std::sync::OnceLock;

static POINT: OnceLock<Option<String>> = OnceLock::new();

/// Aborts the process if `RINGWATCH_FAILPOINT` is `name`.
pub(crate) fn hit(name: &str) {
    let point = POINT.get_or_init(|| std::env::var("RINGWATCH_FAILPOINT").ok());
    if point.as_deref() == Some(name) {
        eprintln!("failpoint {name}: aborting");
        std::process::abort();
    }
}

//! Load averages: `load.1`, `load.5`, `load.15`.

use ringwatch_proto::Unit;
use sysinfo::System;

use super::Samples;

/// Emits the 1, 5 and 15 minute load averages; nothing where the platform has none.
pub fn collect(out: &mut Samples) {
    match System::load_average() {
        Ok(l) => {
            out.total("load.1", l.one, Unit::Load);
            out.total("load.5", l.five, Unit::Load);
            out.total("load.15", l.fifteen, Unit::Load);
        }
        Err(e) => tracing::debug!(error = %e, "no load average"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_os = "linux")]
    fn load_is_non_negative() {
        let mut s = Samples::default();
        collect(&mut s);
        for name in ["load.1", "load.5", "load.15"] {
            let v = s.get(name).expect(name);
            assert!(v >= 0.0, "{name} = {v}");
        }
    }
}

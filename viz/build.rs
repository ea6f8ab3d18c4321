//! Bundles the web UI's third-party assets (uPlot from npm, pinned in `web/package-lock.json`)
//! into the binary: installs them with `npm ci` when `web/node_modules` is missing, then copies
//! the files viz serves into OUT_DIR for `include_bytes!`.

use std::path::{Path, PathBuf};
use std::process::Command;

const ASSETS: &[&str] = &["uPlot.iife.min.js", "uPlot.min.css"];

fn main() {
    let manifest =
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let web = manifest.join("web");
    let dist = web.join("node_modules/uplot/dist");
    println!("cargo:rerun-if-changed=web/package-lock.json");
    println!("cargo:rerun-if-changed=web/node_modules/uplot/package.json");
    println!("cargo:rerun-if-changed=web/node_modules/uplot/dist");
    // Installed and still the version the lockfile pins? Otherwise install it.
    let wanted = locked_version(&web.join("package-lock.json"), "node_modules/uplot");
    let have = locked_version(&web.join("node_modules/uplot/package.json"), "");
    if !dist.join(ASSETS[0]).exists() || wanted.is_none() || wanted != have {
        npm_ci(&web);
    }
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    for a in ASSETS {
        let from = dist.join(a);
        if let Err(e) = std::fs::copy(&from, out.join(a)) {
            panic!(
                "cannot copy {}: {e}; run `npm ci --prefix viz/web`",
                from.display()
            );
        }
    }
}

/// The `version` of `package` in a package-lock.json (or, with "", of a package.json).
fn locked_version(file: &Path, package: &str) -> Option<String> {
    let text = std::fs::read_to_string(file).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    let entry = if package.is_empty() {
        &json
    } else {
        &json["packages"][package]
    };
    entry["version"].as_str().map(str::to_string)
}

fn npm_ci(web: &Path) {
    // The build needs only the runtime packages; the browser test's are installed by
    // scripts/test.sh. No install scripts run.
    let status = Command::new("npm")
        .args([
            "ci",
            "--no-audit",
            "--no-fund",
            "--omit=dev",
            "--ignore-scripts",
        ])
        .current_dir(web)
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => panic!(
            "`npm ci` in {} failed ({s}); the web UI's chart library (uPlot) comes from npm",
            web.display()
        ),
        Err(e) => panic!(
            "cannot run npm ({e}): the web UI's chart library comes from npm; install Node.js \
             and npm (apt-get install -y nodejs npm), or run `npm ci --prefix viz/web` once"
        ),
    }
}

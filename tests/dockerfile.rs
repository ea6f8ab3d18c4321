//! The image's Dockerfile checked against the tree (no container engine runs here, so the image
//! itself is not built in CI): every path it copies exists, every workspace member and every
//! folder the root manifest needs is copied into the build stage, each `--from` names an earlier
//! stage, the binary it copies is the one the build stage builds, and the image runs as a
//! non-root user with the binary as its entrypoint. `.dockerignore` keeps build output and
//! node_modules out of the context.

use std::path::Path;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

struct Stage {
    name: String,
    lines: Vec<String>,
}

/// The Dockerfile's instructions by stage (continuation lines joined, comments dropped).
fn stages() -> Vec<Stage> {
    let text = std::fs::read_to_string(Path::new(ROOT).join("Dockerfile")).expect("Dockerfile");
    let mut joined = Vec::new();
    let mut cur = String::new();
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('#') || (t.is_empty() && cur.is_empty()) {
            continue;
        }
        match t.strip_suffix('\\') {
            Some(part) => cur.push_str(part),
            None => {
                cur.push_str(t);
                joined.push(std::mem::take(&mut cur));
            }
        }
    }
    let mut stages: Vec<Stage> = Vec::new();
    for l in joined {
        let words: Vec<&str> = l.split_whitespace().collect();
        if words.first() == Some(&"FROM") {
            let name = match words.as_slice() {
                [_, _, as_, name] if as_.eq_ignore_ascii_case("as") => name.to_string(),
                _ => String::new(),
            };
            stages.push(Stage {
                name,
                lines: Vec::new(),
            });
        } else {
            stages
                .last_mut()
                .expect("an instruction before FROM")
                .lines
                .push(l);
        }
    }
    stages
}

/// The workspace members, from the root manifest.
fn members() -> Vec<String> {
    let text = std::fs::read_to_string(Path::new(ROOT).join("Cargo.toml")).expect("Cargo.toml");
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("members"))
        .expect("workspace members");
    line.split('"')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

#[test]
fn the_dockerfile_copies_what_exists_builds_the_binary_and_runs_it_unprivileged() {
    let stages = stages();
    assert!(stages.len() >= 2, "a build stage and a runtime stage");
    let build = &stages[0];
    let runtime = stages.last().expect("a runtime stage");

    // Every COPY from the context names paths that exist, and the build stage has the whole
    // workspace.
    let mut copied = Vec::new();
    for (i, s) in stages.iter().enumerate() {
        for l in s.lines.iter().filter(|l| l.starts_with("COPY ")) {
            let args: Vec<&str> = l.split_whitespace().skip(1).collect();
            if let Some(from) = args.iter().find_map(|a| a.strip_prefix("--from=")) {
                assert!(
                    stages[..i].iter().any(|e| e.name == from),
                    "COPY --from={from}: no earlier stage of that name"
                );
                continue;
            }
            let (sources, _dest) = args.split_at(args.len() - 1);
            for src in sources {
                assert!(
                    Path::new(ROOT).join(src).exists(),
                    "COPY {src}: not in the tree"
                );
                if i == 0 {
                    copied.push(src.trim_end_matches('/').to_string());
                }
            }
        }
    }
    let mut needed = members();
    assert!(needed.len() >= 7, "{needed:?}");
    needed.extend(
        ["src", "tests", "benches", "Cargo.toml", "Cargo.lock"]
            .iter()
            .map(|s| s.to_string()),
    );
    for n in &needed {
        assert!(copied.contains(n), "the build stage does not copy {n}");
    }

    // It builds the ringwatch binary, locked, in release, and the runtime copies that one.
    let run = build
        .lines
        .iter()
        .find(|l| l.starts_with("RUN ") && l.contains("cargo build"))
        .expect("a cargo build");
    for w in ["--release", "--locked", "--bin ringwatch"] {
        assert!(run.contains(w), "{run}");
    }
    let built = run
        .split("&&")
        .find_map(|c| {
            let c = c.trim();
            c.strip_prefix("cp target/release/ringwatch ")
        })
        .expect("the binary copied out of target/")
        .trim()
        .to_string();
    let copy = runtime
        .lines
        .iter()
        .find(|l| l.starts_with("COPY --from="))
        .expect("the runtime copies the binary");
    let parts: Vec<&str> = copy.split_whitespace().collect();
    assert_eq!(
        parts[1],
        format!("--from={}", build.name),
        "from the build stage"
    );
    assert_eq!(parts[2], built, "the binary the build stage made");
    let installed = parts[3];

    // Unprivileged, and the binary is the entrypoint.
    let user = runtime
        .lines
        .iter()
        .rev()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("a USER");
    let uid: u32 = user
        .split(':')
        .next()
        .and_then(|u| u.trim().parse().ok())
        .expect("a numeric uid (Kubernetes' runAsNonRoot checks it)");
    assert_ne!(uid, 0, "not root");
    let entry = runtime
        .lines
        .iter()
        .find_map(|l| l.strip_prefix("ENTRYPOINT "))
        .expect("an ENTRYPOINT");
    assert_eq!(entry, format!("[\"{installed}\"]"));

    let ignore =
        std::fs::read_to_string(Path::new(ROOT).join(".dockerignore")).expect(".dockerignore");
    for p in ["target", "viz/web/node_modules"] {
        assert!(ignore.lines().any(|l| l.trim() == p), ".dockerignore: {p}");
    }
}

#[test]
fn the_vendored_chart_library_is_in_the_build_context() {
    // `cargo build` in the image has no npm: uPlot must come from the tree.
    for f in ["uPlot.iife.min.js", "uPlot.min.css", "LICENSE", "VERSION"] {
        assert!(
            Path::new(ROOT)
                .join("viz/web/vendor/uplot")
                .join(f)
                .exists(),
            "{f}"
        );
    }
    assert!(
        !Path::new(ROOT).join("viz/build.rs").exists(),
        "no build script needing npm"
    );
}

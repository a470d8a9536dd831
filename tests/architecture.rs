//! The crate's top-level modules import each other without a cycle (issue 11): shared state
//! lives in `state`, counters in `metrics`, admission in `admission`, so the server, sessions,
//! the admin endpoint and the lock monitor each depend on those and never on one another in a
//! loop. Read from the sources: every `crate::module` path outside comments and test modules.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

fn sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Top-level module → the top-level modules its non-test code names as `crate::…`.
fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut deps: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let rel = file.strip_prefix(&src).expect("under src");
        let top = rel
            .components()
            .next()
            .expect("a component")
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_owned();
        if top == "lib" || top == "main" {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("read source");
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        for line in code.lines() {
            let line = line.split("//").next().unwrap_or_default();
            for (at, _) in line.match_indices("crate::") {
                let name: String = line[at + "crate::".len()..]
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                    .collect();
                if !name.is_empty() && name != top {
                    deps.entry(top.clone()).or_default().insert(name);
                }
            }
        }
    }
    deps
}

#[test]
fn top_level_modules_import_each_other_without_a_cycle() {
    let deps = imports();
    assert!(deps.len() > 10, "the sources were read: {deps:?}");
    // Depth-first search for a back edge; the cycle found is reported as a path.
    fn visit(
        m: &str,
        deps: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == m) {
            let mut cycle = path[i..].to_vec();
            cycle.push(m.to_owned());
            return Some(cycle);
        }
        if done.contains(m) {
            return None;
        }
        path.push(m.to_owned());
        for next in deps.get(m).into_iter().flatten() {
            if let Some(c) = visit(next, deps, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(m.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    for m in deps.keys() {
        if let Some(cycle) = visit(m, &deps, &mut Vec::new(), &mut done) {
            panic!("import cycle: {}", cycle.join(" -> "));
        }
    }
}

/// The session event loops run without Tokio's time driver (`eventloop`, `timer`): a Tokio
/// timer set on one panics. So code a session can reach sets its timers through
/// `crate::timer`; only the files below, which run on the main runtime (or are the timer
/// thread itself), may use `tokio::time` timers.
#[test]
fn session_code_sets_no_tokio_timer() {
    const MAIN_RUNTIME_ONLY: &[&str] = &[
        "timer.rs",
        "server.rs",
        "shutdown.rs",
        "admin.rs",
        "monitor.rs",
        "client.rs",
        "backfill/mod.rs",
    ];
    const TIMERS: &[&str] = &[
        "time::sleep",
        "time::sleep_until",
        "time::timeout",
        "time::timeout_at",
        "time::interval",
        "time::interval_at",
    ];
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut found = Vec::new();
    for file in files {
        let rel = file
            .strip_prefix(&src)
            .expect("under src")
            .to_string_lossy()
            .replace('\\', "/");
        if MAIN_RUNTIME_ONLY.contains(&rel.as_str()) {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("read source");
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        for (n, line) in code.lines().enumerate() {
            let line = line.split("//").next().unwrap_or_default();
            if TIMERS.iter().any(|t| line.contains(t)) {
                found.push(format!("src/{rel}:{}: {}", n + 1, line.trim()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "Tokio timers outside the main runtime's files (use crate::timer):\n{}",
        found.join("\n")
    );
}

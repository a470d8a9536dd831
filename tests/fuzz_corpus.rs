//! Replays the fuzz corpus on the stable toolchain, in the default suite: every seed committed
//! under `fuzz/corpus/<target>/` and every input that once broke a target, saved under
//! `fuzz/regressions/<target>/`, goes through the same function its libFuzzer target calls
//! (`ddlgate::fuzzing`), so an invariant the fuzzer checks is checked here too, in well under a
//! second. Also checks that every target has its libFuzzer binary and a seed corpus.

use std::path::{Path, PathBuf};

use ddlgate::fuzzing::TARGETS;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// The files of `dir`, sorted; none when it does not exist.
fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    out.sort();
    out
}

#[test]
fn every_corpus_file_and_regression_passes_its_target() {
    let mut replayed = 0;
    for (name, body) in TARGETS {
        let seeds = files(&root().join("corpus").join(name));
        assert!(!seeds.is_empty(), "fuzz/corpus/{name} has no seeds");
        for path in seeds
            .into_iter()
            .chain(files(&root().join("regressions").join(name)))
        {
            let data = std::fs::read(&path).expect("read corpus file");
            let outcome = std::panic::catch_unwind(|| body(&data));
            assert!(outcome.is_ok(), "{name} failed on {}", path.display());
            replayed += 1;
        }
    }
    assert!(replayed >= 100, "only {replayed} inputs");
}

#[test]
fn every_target_has_its_fuzz_binary() {
    let manifest = std::fs::read_to_string(root().join("Cargo.toml")).expect("fuzz/Cargo.toml");
    for (name, _) in TARGETS {
        let source = std::fs::read_to_string(root().join(format!("fuzz_targets/{name}.rs")))
            .unwrap_or_else(|e| panic!("fuzz/fuzz_targets/{name}.rs: {e}"));
        assert!(
            source.contains(&format!("ddlgate::fuzzing::{name}(data)")),
            "fuzz/fuzz_targets/{name}.rs does not call ddlgate::fuzzing::{name}"
        );
        assert!(
            manifest.contains(&format!("name = \"{name}\"")),
            "fuzz/Cargo.toml has no [[bin]] {name}"
        );
    }
    // No directory for a target that does not exist.
    for dir in ["corpus", "regressions"] {
        for entry in std::fs::read_dir(root().join(dir)).into_iter().flatten() {
            let entry = entry.expect("directory entry");
            let name = entry.file_name().to_string_lossy().into_owned();
            assert!(
                TARGETS.iter().any(|(t, _)| *t == name) || !entry.path().is_dir(),
                "fuzz/{dir}/{name} belongs to no target"
            );
        }
    }
}

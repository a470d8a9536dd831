//! Fuzz target `overrides`: the body is `ddlgate::fuzzing::overrides`, shared with the replay test of the
//! committed corpus (`tests/fuzz_corpus.rs`); see `fuzz/README.md` for what it checks.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ddlgate::fuzzing::overrides(data));

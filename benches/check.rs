//! Cost of `ddlgate check` over a migration history, at two sizes so a quadratic term shows as
//! a throughput that falls with size: 1 MB and 10 MB of generated migrations mixing what real
//! histories hold (tables, columns, indexes, transactions, overrides, function bodies, data
//! fixes). Run: `cargo bench --bench check`.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ddlgate::check::{Options, check_source};
use ddlgate::config::Config;
use ddlgate::policy::Policy;
use std::fmt::Write;
use std::hint::black_box;

/// About `bytes` of migrations; every statement is on its own line(s) so positions vary.
pub fn migrations(bytes: usize) -> String {
    let mut out = String::with_capacity(bytes + 256);
    let mut i = 0usize;
    while out.len() < bytes {
        // Writing to a String cannot fail.
        let _ = match i % 8 {
            0 => write!(
                out,
                "-- migration {i}\nCREATE TABLE t{i} (id bigint PRIMARY KEY, email text NOT NULL, created_at timestamptz DEFAULT now());\n"
            ),
            1 => writeln!(out, "ALTER TABLE t{i} ADD COLUMN note text;"),
            2 => writeln!(out, "CREATE INDEX t{i}_email ON t{i} (email);"),
            3 => writeln!(
                out,
                "INSERT INTO schema_migrations (version) VALUES ('{i}');"
            ),
            4 => writeln!(
                out,
                "BEGIN;\nALTER TABLE users ADD COLUMN c{i} bigserial;\nCOMMIT;"
            ),
            5 => writeln!(out, "UPDATE users SET email = lower(email) WHERE id = {i};"),
            6 => writeln!(
                out,
                "/* ddlgate:allow require-concurrent-index-creation reason=\"small\" */ CREATE INDEX u{i} ON users (email);"
            ),
            _ => writeln!(
                out,
                "CREATE OR REPLACE FUNCTION f{i}() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$;"
            ),
        };
        i += 1;
    }
    out
}

fn bench(c: &mut Criterion) {
    let policy = Policy::from_config(&Config::default());
    let profile = policy.profile_for("", "", "");
    let opts = Options {
        pg_version: None,
        assume_in_transaction: false,
    };
    let mut group = c.benchmark_group("check");
    group.sample_size(10);
    for (name, bytes) in [("1MB", 1_000_000), ("10MB", 10_000_000)] {
        let sql = migrations(bytes);
        group.throughput(Throughput::Bytes(sql.len() as u64));
        group.bench_function(name, |b| {
            b.iter(|| {
                black_box(check_source(
                    "m.sql",
                    black_box(sql.as_bytes()),
                    &opts,
                    profile,
                ))
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

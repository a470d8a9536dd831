//! Cost of the analysis hook per message: split + prefilter for ordinary traffic (pgbench's
//! SELECT, an ORM query, a 2 KB multi-row INSERT), and the full decision for DDL (understand,
//! rules, policy, rewrite or block). Run: `cargo bench --bench analysis`.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ddlgate::analysis::{Analyzer, Context, Source};
use ddlgate::config::Config;
use ddlgate::metrics::Counters;
use ddlgate::policy::Policy;
use ddlgate::protocol::TxStatus;
use ddlgate::sql::LexOptions;
use std::hint::black_box;

fn inputs() -> Vec<(&'static str, String)> {
    let insert = format!(
        "INSERT INTO events (id, kind, payload, at) VALUES {}",
        (0..40)
            .map(|i| format!("({i}, 'click', '{{\"x\": {i}, \"s\": \"it''s\"}}', now())"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    vec![
        ("pgbench_select", "SELECT abalance FROM pgbench_accounts WHERE aid = 48213;".to_owned()),
        (
            "orm_select",
            "SELECT \"users\".\"id\", \"users\".\"email\", \"users\".\"created_at\" FROM \"users\" INNER JOIN \"memberships\" \
             ON \"memberships\".\"user_id\" = \"users\".\"id\" WHERE \"memberships\".\"org_id\" = $1 AND \"users\".\"deleted_at\" IS NULL \
             ORDER BY \"users\".\"created_at\" DESC LIMIT $2 /* app:web,route:/orgs/:id/users */"
                .to_owned(),
        ),
        ("insert_2kb", insert),
        (
            "migration_multi",
            "BEGIN; CREATE TABLE t (id bigint PRIMARY KEY, body text); CREATE INDEX t_body ON t (body); \
             INSERT INTO schema_migrations (version) VALUES ('20260101'); COMMIT;"
                .to_owned(),
        ),
        ("create_index", "CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_users_email ON public.users USING btree (lower(email)) WHERE deleted_at IS NULL".to_owned()),
        // Decided "rewrite": parse, rules, splice CONCURRENTLY in, re-parse and re-check.
        ("create_index_rewritten", "CREATE INDEX idx_users_email ON public.users USING btree (lower(email)) WHERE deleted_at IS NULL".to_owned()),
        // Decided "block": replaced by the raising DO block.
        ("alter_table_blocked", "ALTER TABLE orders ADD COLUMN id2 bigserial".to_owned()),
    ]
}

fn bench(c: &mut Criterion) {
    let counters = Counters::default();
    let ctx = Context {
        tx: TxStatus::Idle,
        lex: LexOptions::default(),
        server_version: Some(150_000),
        pipelined: false,
        tool: None,
    };
    // The default policy (enforce): what a deployment without a config file runs.
    let policy = Policy::from_config(&Config::default());
    let profile = policy.profile_for("app", "app", "bench");
    let mut group = c.benchmark_group("analyze");
    for (name, sql) in inputs() {
        let mut analyzer = Analyzer::default();
        group.throughput(Throughput::Bytes(sql.len() as u64));
        group.bench_function(name, |b| {
            b.iter(|| {
                black_box(analyzer.analyze(
                    &counters,
                    profile,
                    Source::Query,
                    black_box(sql.as_bytes()),
                    &ctx,
                ))
            })
        });
    }
    group.finish();

    // DDL candidates pay for understanding: sqlparser first, the token classifier when
    // sqlparser rejects the statement (DROP INDEX CONCURRENTLY, REINDEX, DO, …).
    // The byte check the prefilter runs on every DML statement (dblink, `U&"`, COPY … PROGRAM).
    let mut group = c.benchmark_group("side_effects_check");
    for (name, sql) in inputs().into_iter().take(3) {
        group.throughput(Throughput::Bytes(sql.len() as u64));
        let first = sql.split_whitespace().next().unwrap_or_default().to_owned();
        group.bench_function(name, |b| {
            b.iter(|| {
                ddlgate::sql::side_effects::suspicious(
                    black_box(first.as_bytes()),
                    black_box(sql.as_bytes()),
                )
            })
        });
    }
    group.finish();

    // What the session does with every Query (`must_wait_for_idle`'s look, then the decision)
    // for the pgbench write: with the backfill guard off (the default policy) this is the
    // prefilter path of any DML, and must cost what it cost before the guard existed.
    let pgbench_update =
        "UPDATE pgbench_accounts SET abalance = abalance + -3121 WHERE aid = 48213;";
    let mut group = c.benchmark_group("dml_session_path");
    for (name, sql) in [
        ("pgbench_update", pgbench_update),
        (
            "pgbench_select",
            "SELECT abalance FROM pgbench_accounts WHERE aid = 48213;",
        ),
    ] {
        let mut analyzer = Analyzer::default();
        group.bench_function(name, |b| {
            b.iter(|| {
                let sql = black_box(sql.as_bytes());
                black_box(analyzer.has_ddl_candidate(sql, ctx.lex));
                black_box(analyzer.analyze(&counters, profile, Source::Query, sql, &ctx))
            })
        });
    }
    group.finish();
    // With the guard on, the same statement is found as a candidate (its EXPLAIN, a round
    // trip on the server, is not part of this).
    let mut group = c.benchmark_group("backfill_guard_on");
    let mut analyzer = Analyzer::default();
    analyzer.set_backfill(true);
    group.bench_function("pgbench_update", |b| {
        b.iter(|| {
            let sql = black_box(pgbench_update.as_bytes());
            black_box(analyzer.needs_lane(sql, ctx.lex));
            black_box(analyzer.analyze(&counters, profile, Source::Query, sql, &ctx))
        })
    });
    group.finish();

    let mut group = c.benchmark_group("understand_ddl");
    for (name, sql) in [
        (
            "create_index_sqlparser",
            "CREATE UNIQUE INDEX IF NOT EXISTS idx_users_email ON public.users USING btree (lower(email)) WHERE deleted_at IS NULL",
        ),
        (
            "alter_table_3_ops_sqlparser",
            "ALTER TABLE orders ADD COLUMN ext uuid DEFAULT gen_random_uuid(), ADD CONSTRAINT fk FOREIGN KEY (c) REFERENCES customers (id) NOT VALID, ALTER COLUMN email SET NOT NULL",
        ),
        (
            "drop_index_concurrently_fallback",
            "DROP INDEX CONCURRENTLY IF EXISTS public.idx_users_email",
        ),
        (
            "reindex_concurrently_fallback",
            "REINDEX TABLE CONCURRENTLY public.users",
        ),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| {
                black_box(ddlgate::sql::parse::understand(
                    black_box(sql.as_bytes()),
                    0,
                    sql.len(),
                    LexOptions::default(),
                ))
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

//! Multi-step recipes against real PostgreSQL: for each recipe, two identical databases get the
//! same setup; one runs the client's original statement, the other runs the recipe's steps
//! (prechecks first, each step as its own autocommit statement, outside any transaction block),
//! and the resulting schemas must be identical in the catalog — columns and `attnotnull`,
//! constraints with `pg_get_constraintdef` and `convalidated`, indexes with `pg_get_indexdef`
//! and `indisvalid`, index partition trees. While the steps run, a writer keeps inserting into
//! the table and must never wait long; recipes re-run after an interrupted or failed run must
//! finish the job and reach the same schema.

mod common;

use std::time::{Duration, Instant};

use common::*;
use ddlgate::recipe::{self, Context, Partition, Recipe, Step, StepKind};
use ddlgate::sql::LexOptions;
use ddlgate::sql::parse;
use ddlgate::sql::statement::Name;
use tokio_postgres::{Client, SimpleQueryMessage};

/// The longest a single INSERT may wait while a recipe runs. The brief steps hold their
/// ACCESS EXCLUSIVE / SHARE ROW EXCLUSIVE for milliseconds; the long steps must not block
/// writes at all. The slow recipes below run for several times this bound, so a step that
/// did block writes would be caught.
const WRITE_BOUND: Duration = Duration::from_secs(1);

/// ~1 ms per call: makes scans and index builds over a few thousand rows take seconds.
const SLOW_FN: &str = "CREATE FUNCTION slow(v int) RETURNS int LANGUAGE plpgsql IMMUTABLE \
     AS $$ BEGIN PERFORM pg_sleep(0.001); RETURN v; END $$;";

/// Two databases with the same setup: `orig` runs the original statements, `recipe` the steps.
struct Dbs {
    orig: Client,
    recipe: Client,
    recipe_conn: String,
    version: u32,
}

fn conn_to(env: &Env, db: &str) -> String {
    env.direct_conn("ddlgate_admin")
        .replace("dbname=postgres", &format!("dbname={db}"))
}

async fn two_databases(env: &Env, setup: &str) -> Dbs {
    let admin = env.direct_client("ddlgate_admin").await;
    for db in ["orig", "recipe"] {
        admin
            .simple_query(&format!("CREATE DATABASE {db}"))
            .await
            .expect("create database");
    }
    let orig = connect(&conn_to(env, "orig")).await;
    let recipe_conn = conn_to(env, "recipe");
    let recipe = connect(&recipe_conn).await;
    for c in [&orig, &recipe] {
        c.batch_execute(setup).await.expect("setup");
    }
    let version = server_version(&recipe).await;
    Dbs {
        orig,
        recipe,
        recipe_conn,
        version,
    }
}

async fn server_version(client: &Client) -> u32 {
    first_value(client, "SHOW server_version_num")
        .await
        .expect("server_version_num")
        .parse()
        .expect("number")
}

async fn first_value(client: &Client, sql: &str) -> Result<String, tokio_postgres::Error> {
    for m in client.simple_query(sql).await? {
        if let SimpleQueryMessage::Row(row) = m {
            return Ok(row.get(0).unwrap_or_default().to_owned());
        }
    }
    Ok(String::new())
}

/// The partitions of `table` as the caller of `recipe::plan` reads them from the catalog:
/// `None` for an ordinary table.
async fn partitions(client: &Client, table: &str) -> Option<Vec<Partition>> {
    let rows = client
        .query(
            "SELECT p.relname, c.relname, c.relkind::text FROM pg_inherits h \
             JOIN pg_class p ON p.oid = h.inhparent JOIN pg_class c ON c.oid = h.inhrelid \
             WHERE p.relkind = 'p' ORDER BY c.relname",
            &[],
        )
        .await
        .expect("pg_inherits");
    let edges: Vec<(String, String, String)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let relkind = client
        .query_one(
            "SELECT relkind::text FROM pg_class WHERE oid = to_regclass($1)",
            &[&table],
        )
        .await
        .expect("relkind")
        .get::<_, String>(0);
    fn children(edges: &[(String, String, String)], parent: &str) -> Vec<Partition> {
        edges
            .iter()
            .filter(|(p, _, _)| p == parent)
            .map(|(_, c, kind)| {
                if kind == "p" {
                    Partition::partitioned(Name::bare(c), children(edges, c))
                } else {
                    Partition::leaf(Name::bare(c))
                }
            })
            .collect()
    }
    (relkind == "p").then(|| children(&edges, table))
}

fn plan(sql: &str, version: u32, partitions: Option<&[Partition]>) -> Recipe {
    let ddl = parse::understand(sql.as_bytes(), 0, sql.len(), LexOptions::default());
    recipe::plan(
        sql.as_bytes(),
        0,
        sql.len(),
        LexOptions::default(),
        &ddl,
        &Context {
            server_version_num: version,
            partitions,
            partition_of: None,
        },
    )
    .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// What happened to one step.
#[derive(Debug, Clone)]
struct Ran {
    kind: StepKind,
    skipped: bool,
    started: Instant,
    finished: Instant,
}

/// The executor's loop, as the proxy runs it: precheck, then the step alone. Stops at the
/// first failing step and returns its error.
async fn run_steps(client: &Client, steps: &[Step]) -> Result<Vec<Ran>, tokio_postgres::Error> {
    let mut out = Vec::new();
    for step in steps {
        let started = Instant::now();
        let skipped = match &step.skip_if {
            Some(p) => first_value(client, &p.sql()).await? == "t",
            None => false,
        };
        if !skipped {
            client.simple_query(&step.sql).await?;
        }
        out.push(Ran {
            kind: step.kind,
            skipped,
            started,
            finished: Instant::now(),
        });
    }
    Ok(out)
}

/// Asserts both databases have the same schema, and returns it.
async fn assert_same_schema(dbs: &Dbs) -> Vec<String> {
    let orig = catalog_dump(&dbs.orig).await;
    let via = catalog_dump(&dbs.recipe).await;
    assert_eq!(
        orig, via,
        "schema after the original statement (left) vs after the recipe (right)"
    );
    assert!(
        !via.iter().any(|l| l.contains("ddlgate")),
        "no temporary object is left behind: {via:#?}"
    );
    via
}

/// Runs `statements` directly on `orig` and through their recipes on `recipe`, with a writer
/// inserting into the recipe database all along; the schemas must match.
async fn scenario(dbs: &Dbs, statements: &[&str], insert: &'static str) -> Vec<(Recipe, Vec<Ran>)> {
    let writer = Writer::start(&dbs.recipe_conn, insert).await;
    let mut runs = Vec::new();
    for sql in statements {
        dbs.orig
            .simple_query(sql)
            .await
            .unwrap_or_else(|e| panic!("original {sql}: {e}"));
        let table = target_of(sql);
        let parts = partitions(&dbs.recipe, &table).await;
        let r = plan(sql, dbs.version, parts.as_deref());
        let ran = run_steps(&dbs.recipe, &r.steps)
            .await
            .unwrap_or_else(|e| panic!("recipe for {sql}: {e}\n{}", r.describe()));
        // On a clean first run only the INVALID-index cleanups have nothing to do.
        for (step, ran) in r.steps.iter().zip(&ran) {
            assert_eq!(
                ran.skipped,
                step.kind == StepKind::DropInvalidIndex,
                "first run of {}",
                step.sql
            );
        }
        runs.push((r, ran));
    }
    writer.finish(WRITE_BOUND).await;
    assert_same_schema(dbs).await;
    // Running every recipe again changes nothing and skips every guarded step.
    for (r, _) in &runs {
        let again = run_steps(&dbs.recipe, &r.steps).await.expect("re-run");
        for (step, ran) in r.steps.iter().zip(&again) {
            if step.skip_if.is_some() {
                assert!(ran.skipped, "re-run skips {}", step.sql);
            }
        }
    }
    assert_same_schema(dbs).await;
    runs
}

/// The relation a test statement changes, as `to_regclass` text.
fn target_of(sql: &str) -> String {
    let ddl = parse::understand(sql.as_bytes(), 0, sql.len(), LexOptions::default());
    let name = match ddl.kind {
        ddlgate::sql::statement::DdlKind::AlterTable { name, .. } => name,
        ddlgate::sql::statement::DdlKind::CreateIndex { table, .. } => table,
        ddlgate::sql::statement::DdlKind::RefreshMaterializedView { name, .. } => name,
        other => panic!("{other:?}"),
    };
    ddlgate::sql::quote::name_if_needed(&name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn foreign_key_recipe_matches_the_direct_statement() {
    let env = Env::start().await;
    let dbs = two_databases(
        &env,
        "CREATE TABLE customers (id int PRIMARY KEY);
         INSERT INTO customers SELECT g FROM generate_series(1, 1000) g;
         CREATE TABLE orders (id bigserial PRIMARY KEY, customer_id int, other_id int);
         INSERT INTO orders (customer_id, other_id) SELECT g % 1000 + 1, g % 10 + 1 FROM generate_series(1, 200000) g;",
    )
    .await;
    let runs = scenario(
        &dbs,
        &[
            "ALTER TABLE orders ADD FOREIGN KEY (customer_id) REFERENCES customers (id)",
            "ALTER TABLE public.orders ADD CONSTRAINT orders_other_fk FOREIGN KEY (other_id) \
             REFERENCES customers (id) ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED",
        ],
        "INSERT INTO orders (customer_id, other_id) VALUES (7, 7)",
    )
    .await;
    assert_eq!(
        runs[0].0.steps[0].sql,
        "ALTER TABLE orders ADD CONSTRAINT orders_customer_id_fkey FOREIGN KEY (customer_id) \
         REFERENCES customers (id) NOT VALID"
    );
    let lines = catalog_dump(&dbs.recipe).await;
    assert!(
        lines.iter().any(|l| l.contains(
            "constraint orders_customer_id_fkey type=f validated=t FOREIGN KEY (customer_id) REFERENCES customers(id)"
        )),
        "{lines:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn check_recipe_validates_while_writes_continue() {
    let env = Env::start().await;
    let dbs = two_databases(
        &env,
        &format!(
            "{SLOW_FN}
             CREATE TABLE t (id bigserial PRIMARY KEY, v int, w int);
             INSERT INTO t (v, w) SELECT g, g FROM generate_series(1, 2500) g;"
        ),
    )
    .await;
    let runs = scenario(
        &dbs,
        &[
            // ~2.5 s of validation: a direct ADD CHECK would hold ACCESS EXCLUSIVE for all of it.
            "ALTER TABLE t ADD CHECK (slow(v) >= 0)",
            "ALTER TABLE t ADD CONSTRAINT w_positive CHECK (w > 0) NO INHERIT",
        ],
        "INSERT INTO t (v, w) VALUES (1, 1)",
    )
    .await;
    let (r, ran) = &runs[0];
    assert_eq!(
        r.steps[0].sql,
        "ALTER TABLE t ADD CONSTRAINT t_v_check CHECK (slow(v) >= 0) NOT VALID"
    );
    let validate = ran
        .iter()
        .find(|s| s.kind == StepKind::ValidateConstraint)
        .expect("validate step");
    let took = validate.finished - validate.started;
    assert!(
        took > WRITE_BOUND * 2,
        "the validation is long enough to tell blocking from not blocking ({took:?})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_land_during_the_long_validation() {
    let env = Env::start().await;
    let dbs = two_databases(
        &env,
        &format!(
            "{SLOW_FN}
             CREATE TABLE t (id bigserial PRIMARY KEY, v int);
             INSERT INTO t (v) SELECT g FROM generate_series(1, 2500) g;"
        ),
    )
    .await;
    let writer = Writer::start(&dbs.recipe_conn, "INSERT INTO t (v) VALUES (1)").await;
    let r = plan(
        "ALTER TABLE t ADD CONSTRAINT slow_ok CHECK (slow(v) >= 0)",
        dbs.version,
        None,
    );
    let ran = run_steps(&dbs.recipe, &r.steps).await.expect("recipe");
    let done = writer.finish(WRITE_BOUND).await;
    let validate = &ran[1];
    assert_eq!(validate.kind, StepKind::ValidateConstraint);
    let during = done
        .0
        .iter()
        .filter(|(at, _)| *at > validate.started && *at < validate.finished)
        .count();
    assert!(
        during >= 10,
        "INSERTs completed while VALIDATE scanned ({during} in {:?})",
        validate.finished - validate.started
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn set_not_null_recipe_matches_the_direct_statement() {
    let env = Env::start().await;
    let dbs = two_databases(
        &env,
        "CREATE TABLE users (id bigserial PRIMARY KEY, email text, name text);
         INSERT INTO users (email, name) SELECT 'u' || g, 'n' FROM generate_series(1, 100000) g;",
    )
    .await;
    let runs = scenario(
        &dbs,
        &[
            "ALTER TABLE users ALTER COLUMN email SET NOT NULL",
            "ALTER TABLE public.users ALTER name SET NOT NULL",
        ],
        "INSERT INTO users (email, name) VALUES ('w', 'w')",
    )
    .await;
    let kinds: Vec<StepKind> = runs[0].0.steps.iter().map(|s| s.kind).collect();
    if dbs.version >= recipe::PG18 {
        assert_eq!(
            kinds,
            [
                StepKind::AddConstraintNotValid,
                StepKind::ValidateConstraint
            ]
        );
    } else {
        assert_eq!(
            kinds,
            [
                StepKind::AddConstraintNotValid,
                StepKind::ValidateConstraint,
                StepKind::SetNotNull,
                StepKind::DropConstraint
            ]
        );
    }
    let lines = catalog_dump(&dbs.recipe).await;
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("public.users column email text notnull=t")),
        "{lines:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unique_and_primary_key_recipes_match_the_direct_statements() {
    let env = Env::start().await;
    let dbs = two_databases(
        &env,
        "CREATE TABLE accounts (id int, email text, tenant int, note text);
         INSERT INTO accounts SELECT g, 'e' || g, g % 7, 'x' FROM generate_series(1, 100000) g;",
    )
    .await;
    let runs = scenario(
        &dbs,
        &[
            // A nullable key column: the recipe makes it NOT NULL without a scan under
            // ACCESS EXCLUSIVE before attaching the index.
            "ALTER TABLE accounts ADD PRIMARY KEY (id)",
            "ALTER TABLE accounts ADD UNIQUE (email) INCLUDE (tenant)",
            "ALTER TABLE accounts ADD CONSTRAINT accounts_tenant_email UNIQUE NULLS NOT DISTINCT \
             (tenant, email) WITH (fillfactor = 70) DEFERRABLE INITIALLY DEFERRED",
        ],
        "INSERT INTO accounts SELECT -txid_current()::int, 'w' || txid_current(), 1, 'w'",
    )
    .await;
    assert_eq!(
        runs[1].0.steps.last().map(|s| s.sql.as_str()),
        Some(
            "ALTER TABLE accounts ADD CONSTRAINT accounts_email_tenant_key UNIQUE USING INDEX \
             accounts_email_tenant_key"
        )
    );
    let lines = catalog_dump(&dbs.recipe).await;
    for expected in [
        "public.accounts column id integer notnull=t",
        "public.accounts constraint accounts_pkey type=p validated=t PRIMARY KEY (id)",
        "public.accounts index accounts_email_tenant_key valid=t",
    ] {
        assert!(
            lines.iter().any(|l| l.starts_with(expected)),
            "{expected}: {lines:#?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn add_column_recipe_matches_the_direct_statement() {
    let env = Env::start().await;
    let dbs = two_databases(
        &env,
        "CREATE TABLE owners (id int PRIMARY KEY);
         INSERT INTO owners SELECT g FROM generate_series(1, 100) g;
         CREATE TABLE items (id bigserial PRIMARY KEY, label text);
         INSERT INTO items (label) SELECT 'l' || g FROM generate_series(1, 100000) g;",
    )
    .await;
    let runs = scenario(
        &dbs,
        &[
            "ALTER TABLE items ADD COLUMN owner_id int DEFAULT 1 REFERENCES owners (id) \
             ON DELETE SET NULL CHECK (owner_id > 0)",
            "ALTER TABLE items ADD serial_no bigint CONSTRAINT items_serial_uq UNIQUE",
        ],
        "INSERT INTO items (label) VALUES ('w')",
    )
    .await;
    assert_eq!(
        runs[0].0.steps[0].sql,
        "ALTER TABLE items ADD COLUMN IF NOT EXISTS owner_id int DEFAULT 1"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn quoted_and_qualified_names_round_trip() {
    let env = Env::start().await;
    let dbs = two_databases(
        &env,
        r#"CREATE SCHEMA "App Schema";
           CREATE TABLE "App Schema"."Customers" ("Id" int PRIMARY KEY);
           INSERT INTO "App Schema"."Customers" SELECT g FROM generate_series(1, 10) g;
           CREATE TABLE "App Schema"."Order ""Items""" ("Qty" int, "user" int, "Customer Id" int, "Ref" int);
           INSERT INTO "App Schema"."Order ""Items""" SELECT g, g, g % 10 + 1, g % 10 + 1 FROM generate_series(1, 20000) g;"#,
    )
    .await;
    scenario(
        &dbs,
        &[
            r#"ALTER TABLE "App Schema"."Order ""Items""" ADD CHECK ("Qty" > 0)"#,
            r#"ALTER TABLE "App Schema"."Order ""Items""" ALTER COLUMN "Qty" SET NOT NULL"#,
            r#"ALTER TABLE "App Schema"."Order ""Items""" ADD UNIQUE ("user")"#,
            r#"ALTER TABLE "App Schema"."Order ""Items""" ADD CONSTRAINT "Items→Customer ""fk""" FOREIGN KEY ("Customer Id") REFERENCES "App Schema"."Customers" ("Id")"#,
            r#"ALTER TABLE "App Schema"."Order ""Items""" ADD FOREIGN KEY ("Ref") REFERENCES "App Schema"."Customers""#,
        ],
        r#"INSERT INTO "App Schema"."Order ""Items""" VALUES (1, -txid_current()::int, 1, 2)"#,
    )
    .await;
    let lines = catalog_dump(&dbs.recipe).await;
    for expected in [
        "App Schema.Order \"Items\" constraint Order \"Items\"_Qty_check type=c validated=t",
        "App Schema.Order \"Items\" constraint Order \"Items\"_user_key type=u",
        "App Schema.Order \"Items\" constraint Items→Customer \"fk\" type=f validated=t",
        "App Schema.Order \"Items\" constraint Order \"Items\"_Ref_fkey type=f validated=t",
    ] {
        assert!(
            lines.iter().any(|l| l.starts_with(expected)),
            "{expected}: {lines:#?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn refresh_recipe_keeps_the_view_readable() {
    let env = Env::start().await;
    let dbs = two_databases(
        &env,
        &format!(
            "{SLOW_FN}
             CREATE TABLE src (id int PRIMARY KEY, v int);
             INSERT INTO src SELECT g, g FROM generate_series(1, 2500) g;
             CREATE MATERIALIZED VIEW mv AS SELECT id, slow(v) AS v FROM src;
             CREATE UNIQUE INDEX mv_id ON mv (id);
             UPDATE src SET v = v + 1 WHERE id % 2 = 0;"
        ),
    )
    .await;
    // Readers of the view must not wait for the refresh (a plain REFRESH holds ACCESS
    // EXCLUSIVE for its whole ~2.5 s), and writers of the base table neither.
    let reader = Writer::start(&dbs.recipe_conn, "SELECT count(*) FROM mv").await;
    let runs = scenario(
        &dbs,
        &["REFRESH MATERIALIZED VIEW mv"],
        "INSERT INTO src VALUES (-txid_current()::int, 0)",
    )
    .await;
    reader.finish(WRITE_BOUND).await;
    assert_eq!(
        runs[0].0.steps[0].sql,
        "REFRESH MATERIALIZED VIEW CONCURRENTLY mv"
    );
    let (r, ran) = &runs[0];
    assert!(r.steps[0].long_running);
    assert!(ran[0].finished - ran[0].started > WRITE_BOUND * 2);
    let contents = "SELECT string_agg(id || ':' || v, ',' ORDER BY id) FROM mv WHERE id > 0";
    assert_eq!(
        first_value(&dbs.orig, contents).await.expect("orig mv"),
        first_value(&dbs.recipe, contents).await.expect("recipe mv"),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn partitioned_index_recipe_matches_the_direct_statement() {
    let env = Env::start().await;
    let dbs = two_databases(
        &env,
        &format!(
            "{SLOW_FN}
             CREATE TABLE m (id int NOT NULL, v int, tenant int) PARTITION BY RANGE (id);
             CREATE TABLE m_a PARTITION OF m FOR VALUES FROM (0) TO (1000);
             CREATE TABLE m_b PARTITION OF m FOR VALUES FROM (1000) TO (2000) PARTITION BY RANGE (id);
             CREATE TABLE m_b1 PARTITION OF m_b FOR VALUES FROM (1000) TO (1500);
             CREATE TABLE m_b2 PARTITION OF m_b FOR VALUES FROM (1500) TO (2000);
             CREATE TABLE m_rest PARTITION OF m DEFAULT;
             INSERT INTO m SELECT g, g, g % 5 FROM generate_series(0, 1999) g;"
        ),
    )
    .await;
    let runs = scenario(
        &dbs,
        &[
            // ~2 s of building in total, never blocking the INSERTs into the tree.
            "CREATE INDEX ON m (slow(v), tenant)",
            "CREATE UNIQUE INDEX m_id_uq ON m USING btree (id) INCLUDE (tenant)",
            "CREATE INDEX m_tenant_partial ON m (tenant) WHERE v > 10",
        ],
        "INSERT INTO m SELECT 100000 + (txid_current() % 100000)::int, 1, 1",
    )
    .await;
    let steps: Vec<&str> = runs[0].0.steps.iter().map(|s| s.sql.as_str()).collect();
    assert_eq!(
        steps[0],
        "CREATE INDEX IF NOT EXISTS m_slow_tenant_idx ON ONLY m (slow(v), tenant)"
    );
    assert!(
        steps.contains(&"ALTER INDEX m_b_slow_tenant_idx ATTACH PARTITION m_b1_slow_tenant_idx")
    );
    let lines = catalog_dump(&dbs.recipe).await;
    for expected in [
        "public.m index m_slow_tenant_idx valid=t",
        "public.m_b index m_b_slow_tenant_idx valid=t",
        "index m_b2_slow_tenant_idx is a partition of m_b_slow_tenant_idx",
        "public.m index m_id_uq valid=t",
    ] {
        assert!(
            lines.iter().any(|l| l.starts_with(expected)),
            "{expected}: {lines:#?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rerun_after_a_partial_or_failed_run_finishes_the_job() {
    let env = Env::start().await;
    let dbs = two_databases(
        &env,
        "CREATE TABLE customers (id int PRIMARY KEY);
         INSERT INTO customers SELECT g FROM generate_series(1, 100) g;
         CREATE TABLE orders (id bigserial PRIMARY KEY, customer_id int, note text);
         INSERT INTO orders (customer_id, note) SELECT g % 100 + 1, 'n' FROM generate_series(1, 50000) g;",
    )
    .await;

    // Interrupted: only the first step of SET NOT NULL ran (say the connection dropped).
    let sql = "ALTER TABLE orders ALTER COLUMN note SET NOT NULL";
    dbs.orig.simple_query(sql).await.expect("original");
    let r = plan(sql, dbs.version, None);
    run_steps(&dbs.recipe, &r.steps[..1])
        .await
        .expect("first step");
    let ran = run_steps(&dbs.recipe, &r.steps).await.expect("resumed run");
    assert!(ran[0].skipped, "the step that already ran is skipped");
    assert!(ran[1..].iter().all(|s| !s.skipped));
    assert_same_schema(&dbs).await;

    // Failed: the validation finds orphans; the data is fixed; the re-run finishes.
    dbs.recipe
        .simple_query("INSERT INTO orders (customer_id, note) VALUES (999, 'orphan')")
        .await
        .expect("orphan");
    let sql = "ALTER TABLE orders ADD FOREIGN KEY (customer_id) REFERENCES customers (id)";
    let r = plan(sql, dbs.version, None);
    let err = run_steps(&dbs.recipe, &r.steps)
        .await
        .expect_err("validation fails on the orphan");
    assert_eq!(sqlstate(&err).as_deref(), Some("23503"));
    // The constraint is there, NOT VALID, and already enforced for new rows.
    let lines = catalog_dump(&dbs.recipe).await;
    assert!(
        lines
            .iter()
            .any(|l| l.contains("constraint orders_customer_id_fkey type=f validated=f")),
        "{lines:#?}"
    );
    dbs.recipe
        .simple_query("DELETE FROM orders WHERE customer_id = 999")
        .await
        .expect("fix the data");
    let ran = run_steps(&dbs.recipe, &r.steps).await.expect("re-run");
    assert!(ran[0].skipped && !ran[1].skipped);
    dbs.orig.simple_query(sql).await.expect("original");
    assert_same_schema(&dbs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn invalid_index_from_a_failed_build_is_dropped_and_rebuilt() {
    let env = Env::start().await;
    let dbs = two_databases(
        &env,
        "CREATE TABLE t (id bigserial PRIMARY KEY, code text);
         INSERT INTO t (code) SELECT 'c' || g FROM generate_series(1, 50000) g;",
    )
    .await;
    dbs.recipe
        .simple_query("INSERT INTO t (code) VALUES ('c1')")
        .await
        .expect("duplicate");
    let sql = "ALTER TABLE t ADD CONSTRAINT t_code_key UNIQUE (code)";
    let r = plan(sql, dbs.version, None);
    let err = run_steps(&dbs.recipe, &r.steps)
        .await
        .expect_err("the unique build fails on the duplicate");
    assert_eq!(sqlstate(&err).as_deref(), Some("23505"));
    let lines = catalog_dump(&dbs.recipe).await;
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("public.t index t_code_key valid=f")),
        "the failed build left an INVALID index: {lines:#?}"
    );

    dbs.recipe
        .simple_query("DELETE FROM t WHERE id = (SELECT max(id) FROM t)")
        .await
        .expect("fix the data");
    let writer = Writer::start(&dbs.recipe_conn, "INSERT INTO t (code) VALUES (NULL)").await;
    let ran = run_steps(&dbs.recipe, &r.steps).await.expect("re-run");
    writer.finish(WRITE_BOUND).await;
    assert_eq!(ran[0].kind, StepKind::DropInvalidIndex);
    assert!(!ran[0].skipped, "the INVALID index is dropped");
    assert!(!ran[1].skipped, "and built again");
    dbs.orig.simple_query(sql).await.expect("original");
    let lines = assert_same_schema(&dbs).await;
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("public.t index t_code_key valid=t")),
        "{lines:#?}"
    );
}

//! Django 5.2: a minimal project (`fixtures/django`: settings module, app `shop` whose models
//! map to the accounts/orders tables) and the history as Django migrations, run by
//! `manage.py migrate` (each migration in its own transaction, `atomic = True` by default) and
//! `manage.py migrate shop zero` for the way back. The way out on big tables is the hint's:
//! `atomic = False` on the migration (`fixtures/django/outside`).
//!
//! Observed here: with psycopg 3 and psycopg 2 both installed, Django picks psycopg 3 and its
//! client-side-binding cursor, so every statement is a simple-protocol Query (the server logs
//! `statement:`, never `execute`), and ddlgate's multi-step rewrites apply. Django's schema
//! editor adds more than the operation names: an index for a ForeignKey (created before the
//! constraint, so that index is what a transactional migration is refused on), a
//! `text_pattern_ops` index beside a unique text column, `DEFERRABLE INITIALLY DEFERRED`
//! foreign keys, `DROP COLUMN … CASCADE`.

use std::path::Path;

use crate::alembic::{WRITE, count, edit};
use crate::harness::{E2e, Run, Tool, Via, Writer, fixtures, tool_dir, workdir};
use crate::psql::override_from;

fn manage(e2e: &E2e, via: Via, db: &str, dir: &Path) -> Tool {
    let (host, port) = e2e.host_port(via);
    Tool::new(tool_dir("python").join("python"))
        .arg("manage.py")
        .env("DB_HOST", host)
        .env("DB_PORT", port.to_string())
        .env("DB_NAME", db)
        .env("DB_USER", "trust_user")
        // The test edits migrations between runs; no stale bytecode may stand in for them.
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .cwd(dir)
}

fn migration(dir: &Path, name: &str) -> std::path::PathBuf {
    dir.join("shop/migrations").join(name)
}

/// The newest of shop's migrations recorded in django_migrations ("" for none).
async fn recorded(e2e: &E2e, db: &str) -> String {
    count(
        e2e,
        db,
        "SELECT coalesce(max(name), '') FROM django_migrations WHERE app = 'shop'",
    )
    .await
}

const RENAME: &str = r#"migrations.RenameField(
            model_name="order",
            old_name="note",
            new_name="remark",
        ),"#;

/// The rename as Django users carry raw SQL: `RunSQL` with the RenameField as its state
/// operation, the SQL prefixed with the override the refusal printed. The way back stays the
/// plain rename until `override_rename_back`.
fn override_rename(dir: &Path, run: &Run) {
    edit(
        &migration(dir, "0007_rename_note_remark.py"),
        RENAME,
        &format!(
            r#"migrations.RunSQL(
            sql='''{} ALTER TABLE orders RENAME COLUMN note TO remark''',
            reverse_sql="ALTER TABLE orders RENAME COLUMN remark TO note",
            state_operations=[
                {RENAME}
            ],
        ),"#,
            override_from(run)
        ),
    );
}

fn override_rename_back(dir: &Path, run: &Run) {
    edit(
        &migration(dir, "0007_rename_note_remark.py"),
        r#"reverse_sql="ALTER TABLE orders RENAME COLUMN remark TO note""#,
        &format!(
            "reverse_sql='''{} ALTER TABLE orders RENAME COLUMN remark TO note'''",
            override_from(run)
        ),
    );
}

/// Fresh tables, Django's default (each migration atomic): 0001 to 0006 apply and are recorded,
/// the rename is refused with the rule and the override; with the override in a RunSQL it
/// applies, and so does the drop. `migrate shop zero` unapplies down to the rename back, refused
/// the same way, then to nothing. At each end the schema equals the same history applied
/// directly, and django_migrations records exactly what is applied.
#[tokio::test]
async fn django_fresh_tables() {
    let e2e = E2e::start().await;
    e2e.create_db("via_proxy").await;
    e2e.create_db("direct").await;
    let dir = workdir("django");
    let dir = dir.path();
    let up = |via, db| manage(&e2e, via, db, dir).arg("migrate");
    let zero = |via, db| manage(&e2e, via, db, dir).args(["migrate", "shop", "zero"]);

    let run = up(Via::Proxy, "via_proxy").fails().await;
    run.assert_says(&[
        "Applying shop.0001_initial... OK",
        "Applying shop.0006_order_total_not_null... OK",
        "Applying shop.0007_rename_note_remark...",
        "psycopg.DatabaseError: ddlgate blocked this statement",
        "renaming-column",
        "ddlgate:allow renaming-column",
    ]);
    assert_eq!(
        recorded(&e2e, "via_proxy").await,
        "0006_order_total_not_null"
    );
    override_rename(dir, &run);
    let run = up(Via::Proxy, "via_proxy").ok().await;
    run.assert_says(&[
        "Applying shop.0007_rename_note_remark... OK",
        "Applying shop.0008_remove_order_legacy_code... OK",
    ]);
    run.assert_silent_on(&["Traceback", "ddlgate"]);
    assert_eq!(
        recorded(&e2e, "via_proxy").await,
        "0008_remove_order_legacy_code"
    );
    up(Via::Direct, "direct").ok().await;
    e2e.assert_same_schema("via_proxy", "direct", &[]).await;

    let run = zero(Via::Proxy, "via_proxy").fails().await;
    run.assert_says(&[
        "Unapplying shop.0008_remove_order_legacy_code... OK",
        "Unapplying shop.0007_rename_note_remark...",
        "renaming-column",
    ]);
    assert_eq!(recorded(&e2e, "via_proxy").await, "0007_rename_note_remark");
    override_rename_back(dir, &run);
    let run = zero(Via::Proxy, "via_proxy").ok().await;
    run.assert_says(&["Unapplying shop.0001_initial... OK"]);
    run.assert_silent_on(&["Traceback"]);
    zero(Via::Direct, "direct").ok().await;
    e2e.assert_same_schema("via_proxy", "direct", &[]).await;
    assert_eq!(recorded(&e2e, "via_proxy").await, "");
    assert_eq!(
        count(
            &e2e,
            "via_proxy",
            "SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relname NOT LIKE 'django_migrations%'"
        )
        .await,
        "0",
        "migrate shop zero leaves only Django's own table"
    );
}

/// A refused migration and its way out: the migration, the rule the refusal names (Django's
/// first statement the rule stops), a probe counting its effects ("0" before, `effects`
/// after), and what ddlgate sends in its place, as the server logs it.
struct Step {
    name: &'static str,
    rule: &'static str,
    probe: &'static str,
    effects: &'static str,
    safe_form: &'static [&'static str],
}

const STEPS: [Step; 4] = [
    Step {
        name: "0003_order_status_idx",
        rule: "require-concurrent-index-creation",
        probe: "SELECT count(*) FROM pg_index WHERE indexrelid = to_regclass('orders_status_idx') AND indisvalid",
        effects: "1",
        safe_form: &[
            r#"statement: CREATE INDEX CONCURRENTLY "orders_status_idx" ON "orders" ("status")"#,
        ],
    },
    Step {
        name: "0004_order_account_fk",
        // Django creates the ForeignKey's index first: that is the statement refused.
        rule: "require-concurrent-index-creation",
        // The ForeignKey's index and the validated constraint.
        probe: "SELECT (SELECT count(*) FROM pg_index WHERE indexrelid = to_regclass('orders_account_id_92f83327') AND indisvalid) + (SELECT count(*) FROM pg_constraint WHERE conrelid = 'orders'::regclass AND contype = 'f' AND convalidated)",
        effects: "2",
        safe_form: &[
            r#"statement: CREATE INDEX CONCURRENTLY "orders_account_id_92f83327" ON "orders" ("account_id")"#,
            r#"FOREIGN KEY ("account_id") REFERENCES "accounts" ("id") DEFERRABLE INITIALLY DEFERRED NOT VALID"#,
            "statement: ALTER TABLE orders VALIDATE CONSTRAINT orders_account_id_92f83327_fk_accounts_id",
        ],
    },
    Step {
        name: "0005_account_email_unique",
        rule: "disallowed-unique-constraint",
        // The unique constraint and the text_pattern_ops index beside it.
        probe: "SELECT (SELECT count(*) FROM pg_constraint WHERE conrelid = 'accounts'::regclass AND contype = 'u') + (SELECT count(*) FROM pg_index WHERE indexrelid = to_regclass('accounts_email_200aa879_like') AND indisvalid)",
        effects: "2",
        safe_form: &[
            "statement: CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS accounts_email_200aa879_uniq ON accounts (email)",
            "UNIQUE USING INDEX accounts_email_200aa879_uniq",
            r#"statement: CREATE INDEX CONCURRENTLY "accounts_email_200aa879_like" ON "accounts" ("email" text_pattern_ops)"#,
        ],
    },
    Step {
        name: "0006_order_total_not_null",
        rule: "adding-not-nullable-field",
        probe: "SELECT count(*) FROM pg_attribute WHERE attrelid = 'orders'::regclass AND attname = 'total' AND attnotnull",
        effects: "1",
        safe_form: &[
            "statement: ALTER TABLE orders ADD CONSTRAINT orders_total_ddlgate_nn CHECK (total IS NOT NULL) NOT VALID",
            "statement: ALTER TABLE orders VALIDATE CONSTRAINT orders_total_ddlgate_nn",
        ],
    },
];

/// Big tables with a writer, `manage.py migrate` after each fix: each atomic migration that
/// builds an index, adds a foreign key, a unique constraint or NOT NULL is refused (rule,
/// DETAIL, HINT naming `atomic = False`), is not recorded and leaves none of its effects. With
/// `atomic = False` it applies in ddlgate's safe form (the server's statement log shows
/// CONCURRENTLY, NOT VALID and VALIDATE, all sent as simple Queries) and is recorded. The
/// writer never waits longer than lock_timeout + 1 s; the end schema equals the final history
/// applied directly.
#[tokio::test]
async fn django_big_tables() {
    let e2e = E2e::start().await;
    for db in ["via_proxy", "server_side_binding", "direct"] {
        e2e.create_db(db).await;
    }
    e2e.admin_exec(
        "postgres",
        "ALTER DATABASE via_proxy SET log_statement = 'ddl'; ALTER DATABASE server_side_binding SET log_statement = 'all'",
    )
    .await;
    let dir = workdir("django");
    let dir = dir.path();
    let up = || manage(&e2e, Via::Proxy, "via_proxy", dir).arg("migrate");

    manage(&e2e, Via::Proxy, "via_proxy", dir)
        .args(["migrate", "shop", "0001"])
        .ok()
        .await;
    e2e.fill_accounts_and_orders("via_proxy").await;
    let writer = Writer::start(&e2e, "via_proxy", WRITE).await;

    let mut previous = "0002_order_status";
    for step in &STEPS {
        let run = up().fails().await;
        run.assert_says(&[
            &format!("Applying shop.{previous}... OK"),
            &format!("Applying shop.{}...", step.name),
            "ddlgate blocked this statement",
            step.rule,
            "DETAIL:",
            "HINT:",
            // Known by its version table (django_migrations): Django's way out, only Django's.
            "outside any transaction: with Django, set `atomic = False` on the migration",
        ]);
        run.assert_silent_on(&["disable_ddl_transaction!"]);
        assert_eq!(recorded(&e2e, "via_proxy").await, previous);
        assert_eq!(
            count(&e2e, "via_proxy", step.probe).await,
            "0",
            "{} left something behind after its refusal",
            step.name
        );
        let file = format!("{}.py", step.name);
        std::fs::copy(
            fixtures("django").join("outside").join(&file),
            migration(dir, &file),
        )
        .expect("copy the atomic = False variant");
        previous = step.name;
    }
    let run = up().fails().await;
    run.assert_says(&[
        "Applying shop.0006_order_total_not_null... OK",
        "renaming-column",
    ]);
    let log = e2e.env.pg.log();
    for step in &STEPS {
        assert_eq!(
            count(&e2e, "via_proxy", step.probe).await,
            step.effects,
            "{} applied",
            step.name
        );
        for line in step.safe_form {
            assert!(
                log.contains(line),
                "{}: the server did not log {line:?}",
                step.name
            );
        }
    }
    assert!(
        !log.contains("execute <unnamed>: ALTER") && !log.contains("execute <unnamed>: CREATE"),
        "Django sent DDL by the extended protocol"
    );
    override_rename(dir, &run);
    let run = up().ok().await;
    run.assert_says(&["Applying shop.0008_remove_order_legacy_code... OK"]);
    assert_eq!(
        recorded(&e2e, "via_proxy").await,
        "0008_remove_order_legacy_code"
    );
    writer.stop_and_check().await;

    manage(&e2e, Via::Direct, "direct", dir)
        .arg("migrate")
        .ok()
        .await;
    e2e.assert_same_schema("via_proxy", "direct", &[]).await;

    // With server-side binding on, psycopg 3 still sends the schema editor's DDL (no
    // parameters) as simple Queries: the final history applies through ddlgate on big tables,
    // multi-step rewrites included (the extended protocol would have them refused).
    let ssb =
        || manage(&e2e, Via::Proxy, "server_side_binding", dir).env("DB_SERVER_SIDE_BINDING", "1");
    ssb().args(["migrate", "shop", "0001"]).ok().await;
    e2e.fill_accounts_and_orders("server_side_binding").await;
    ssb().arg("migrate").ok().await;
    let log = e2e.env.pg.log();
    assert!(
        log.contains(r#"execute <unnamed>: INSERT INTO "django_migrations""#),
        "server-side binding was not on: Django recorded its migrations by simple Queries"
    );
    assert!(
        !log.contains("execute <unnamed>: ALTER") && !log.contains("execute <unnamed>: CREATE"),
        "Django sent DDL by the extended protocol"
    );
    e2e.assert_same_schema("server_side_binding", "direct", &[])
        .await;
}

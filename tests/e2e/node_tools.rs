//! The two scenarios every tool installed by `scripts/e2e-tools.sh node` (knex,
//! node-pg-migrate, dbmate) runs, written once over a [`Migrator`] that says how each tool
//! applies and reverts its history, where it records it and how a user opts a migration out
//! of its transaction. Each history (under `fixtures/<tool>`) is the psql one (accounts and
//! orders) in that tool's own format.
//!
//! The tools differ in what a failed `up` run leaves behind: knex (when every pending
//! migration is transactional) and node-pg-migrate (`singleTransaction`, its default) run the
//! whole run in one transaction, dbmate commits each migration on its own. And in what they
//! print: only node-pg-migrate prints the server's DETAIL and HINT. All three send each
//! statement (dbmate: each section) as a simple Query, so ddlgate's multi-step rewrites apply
//! once a migration leaves the transaction; ddlgate's decision counters prove which ran.

use std::path::{Path, PathBuf};

use ddlgate::rules::Action;

use crate::harness::{self, E2e, Run, Tool, Via, Writer};

/// The writer: one short UPDATE of a row of the big table.
pub const WRITE: &str = "UPDATE orders SET total = total + 1 WHERE id = 1 + (random() * 999)::int";

/// The reason a test writes into the override comment it copies from the refusal.
const REASON: &str = "e2e: the application no longer reads it";

/// Counts the column migration 1 adds.
const STATUS_COLUMN: &str = "SELECT count(*) FROM pg_attribute WHERE attrelid = 'orders'::regclass AND attname = 'status' AND NOT attisdropped";

/// The rename's position in every history (0-based): the one migration refused on fresh
/// tables.
pub const RENAME: usize = 6;

/// Migrations refused inside the tool's transaction on big tables: position, rule, a query
/// that counts the migration's effect (0 before, 1 after), and what the refusal's DETAIL
/// says it would have done to the application.
pub const REFUSED_ON_BIG_TABLES: [(usize, &str, &str, &str); 4] = [
    (
        2,
        "require-concurrent-index-creation",
        "SELECT count(*) FROM pg_indexes WHERE indexname = 'orders_status_idx'",
        "takes a SHARE lock for the whole index build",
    ),
    (
        3,
        "adding-foreign-key-constraint",
        "SELECT count(*) FROM pg_constraint WHERE conname = 'orders_account_id_fkey'",
        "checks every row of orders while holding SHARE ROW EXCLUSIVE on both tables",
    ),
    (
        4,
        "disallowed-unique-constraint",
        "SELECT count(*) FROM pg_class WHERE relname = 'accounts_email_key'",
        "builds its index under an ACCESS EXCLUSIVE lock",
    ),
    (
        5,
        "adding-not-nullable-field",
        "SELECT count(*) FROM pg_attribute WHERE attrelid = 'orders'::regclass AND attname = 'total' AND attnotnull",
        "scans the whole table under an ACCESS EXCLUSIVE lock",
    ),
];

/// How one tool runs a history.
pub trait Migrator {
    /// The fixture directory under `tests/e2e/fixtures`.
    const NAME: &'static str;
    /// A failed run of every pending migration, all of them transactional, leaves none of them
    /// applied: the tool ran them in one transaction.
    const ONE_TRANSACTION_PER_RUN: bool;
    /// The same for a run of [`Migrator::down_all`].
    const ONE_TRANSACTION_PER_DOWN_RUN: bool;
    /// The tool prints the server's HINT, so the user sees the way out and the override.
    const SHOWS_HINT: bool;
    /// The tool prints the server's NOTICEs and WARNINGs (ddlgate's rewrite notices).
    const SHOWS_NOTICES: bool;
    /// The tool's way out as ddlgate words it: in the HINT where the tool shows it, else in the
    /// message when ddlgate knows the tool ([`Migrator::KNOWN_BY_VERSION_TABLE`]).
    const WAY_OUT: &'static str;
    /// ddlgate recognises the tool by its version table (`crate::tools`): its refusals then
    /// name this tool's way out, and carry the override in the message if the HINT is hidden.
    const KNOWN_BY_VERSION_TABLE: bool;
    /// The tables the tool keeps its own records in (left after the last down).
    const VERSION_TABLES: &'static [&'static str];
    /// Names of the applied migrations as the version table holds them, in order.
    const APPLIED_SQL: &'static str;

    /// The migration files of a work directory, in order.
    fn migrations(dir: &Path) -> Vec<PathBuf>;
    /// What the version table records for `file`.
    fn recorded_name(file: &Path) -> String;
    /// Makes a copied fixture runnable (e.g. gives it `node_modules`).
    fn prepare(_dir: &Path) {}
    /// Applies only the first migration (the tables), or every pending one.
    fn up(e2e: &E2e, via: Via, db: &str, dir: &Path, first_only: bool) -> Tool;
    /// Reverts every applied migration in one run, or `None` when the tool reverts one at a
    /// time (then [`Migrator::down_one`]).
    fn down_all(e2e: &E2e, via: Via, db: &str, dir: &Path) -> Option<Tool>;
    /// Reverts the last applied migration.
    fn down_one(e2e: &E2e, via: Via, db: &str, dir: &Path) -> Tool;
    /// Marks the migration in `file` to run outside the tool's transaction, as its docs say.
    fn opt_out(file: &Path);
    /// Rewrites the rename migration's `up` (or `down`) to carry the override comment.
    fn allow_rename(file: &Path, up: bool, comment: &str);
}

/// Replaces the one occurrence of `from` in `file` with `to`.
pub fn edit(file: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    assert_eq!(
        text.matches(from).count(),
        1,
        "{} should hold {from:?} once:\n{text}",
        file.display()
    );
    std::fs::write(file, text.replacen(from, to, 1)).expect("write migration");
}

/// The files of `dir` (sorted) whose names end with `ext`.
pub fn files(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.to_string_lossy().ends_with(ext))
        .collect();
    files.sort();
    assert!(files.len() >= 8, "a history of at least eight migrations");
    files
}

/// The override comment a user writes after the rename's refusal: copied from the output
/// when the tool prints it (the HINT, or the message of a tool ddlgate recognises); otherwise
/// made from the rule the message names, as README's "Overrides" section shows.
fn override_for<M: Migrator>(run: &Run) -> String {
    if M::SHOWS_HINT || M::KNOWN_BY_VERSION_TABLE {
        run.assert_says(&["ddlgate:allow renaming-column"]);
        crate::psql::override_from(run)
    } else {
        run.assert_silent_on(&["ddlgate:allow"]);
        format!("/* ddlgate:allow renaming-column reason=\"{REASON}\" */")
    }
}

async fn applied<M: Migrator>(e2e: &E2e, db: &str) -> Vec<String> {
    e2e.query_text(db, M::APPLIED_SQL).await
}

fn names<M: Migrator>(files: &[PathBuf]) -> Vec<String> {
    files.iter().map(|f| M::recorded_name(f)).collect()
}

async fn assert_applied<M: Migrator>(e2e: &E2e, db: &str, files: &[PathBuf], why: &str) {
    assert_eq!(
        applied::<M>(e2e, db).await,
        names::<M>(files),
        "{}'s version table in {db} {why}",
        M::NAME
    );
}

/// How many statements ddlgate blocked, rewrote to their safe form and allowed by override.
fn decisions(e2e: &E2e) -> (u64, u64, u64) {
    let d = &e2e.env.proxy.shared().counters.decisions;
    let effective = |a: Action| d.effective(a);
    (
        effective(Action::Block),
        effective(Action::Rewrite),
        d.overrides("renaming-column"),
    )
}

async fn count(e2e: &E2e, db: &str, sql: &str) -> String {
    e2e.query_text(db, sql).await.remove(0)
}

/// Applies every pending migration through ddlgate in `via_proxy` and asserts the run
/// succeeded (or failed). No column the history makes NOT NULL had a NOT NULL before, so
/// ddlgate has no reason to warn about dropping one (knex's `.alter()` sends `DROP NOT NULL`
/// first).
async fn up_all<M: Migrator>(e2e: &E2e, dir: &Path, succeeds: bool) -> Run {
    let run = M::up(e2e, Via::Proxy, "via_proxy", dir, false).run().await;
    assert_eq!(run.success(), succeeds, "{run}");
    if M::SHOWS_NOTICES {
        run.assert_silent_on(&["ban-drop-not-null"]);
    }
    run
}

/// Reverts the whole history through `via`; through ddlgate the rename back is refused
/// first, then allowed by the override, and the version table says what is applied at each
/// step.
async fn down_path<M: Migrator>(e2e: &E2e, via: Via, db: &str, dir: &Path, files: &[PathBuf]) {
    let rename = &files[RENAME];
    if let Some(tool) = M::down_all(e2e, via, db, dir) {
        if via == Via::Proxy {
            let run = tool.fails().await;
            run.assert_says(&["ddlgate blocked this statement", "renaming-column"]);
            if M::ONE_TRANSACTION_PER_DOWN_RUN {
                assert_applied::<M>(
                    e2e,
                    db,
                    files,
                    "still holds every migration: the refused down run was one transaction",
                )
                .await;
            } else {
                assert_applied::<M>(
                    e2e,
                    db,
                    &files[..=RENAME],
                    "lost the migrations reverted before the refused one",
                )
                .await;
            }
            M::allow_rename(rename, false, &override_for::<M>(&run));
            let run = M::down_all(e2e, via, db, dir).expect("down_all").ok().await;
            run.assert_silent_on(&["ERROR", "DG00"]);
        } else {
            tool.ok().await;
        }
    } else {
        for i in (0..files.len()).rev() {
            let run = M::down_one(e2e, via, db, dir).run().await;
            if i == RENAME && via == Via::Proxy {
                assert!(!run.success(), "renaming back is a rename too:\n{run}");
                run.assert_says(&["ddlgate blocked this statement", "renaming-column"]);
                assert_applied::<M>(e2e, db, &files[..=i], "still records the rename").await;
                M::allow_rename(rename, false, &override_for::<M>(&run));
                M::down_one(e2e, via, db, dir).ok().await;
            } else {
                assert!(run.success(), "down of migration {i} must apply:\n{run}");
                run.assert_silent_on(&["ERROR", "DG00"]);
            }
            assert_applied::<M>(e2e, db, &files[..i], "after a down").await;
        }
    }
    assert_applied::<M>(e2e, db, &[], "is empty after the whole down path").await;
    let left = e2e
        .query_text(
            db,
            "SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relkind = 'r' ORDER BY relname",
        )
        .await;
    assert_eq!(
        left,
        M::VERSION_TABLES,
        "the down path leaves only the version tables"
    );
}

/// A first deploy (the whole history in one run on an empty database: with a tool that runs
/// it in one transaction, the tables are created in it and nothing is refused). Then fresh,
/// never-analyzed tables (created by the first migration, in a run of its own), the rest in
/// one run of the tool's default, transactional mode: everything applies as written except the
/// rename, which is refused with its rule; with the override it applies. The schema equals the
/// same history applied directly, and so it does after the down path.
pub async fn fresh_tables<M: Migrator>() {
    let e2e = E2e::start().await;
    e2e.create_db("via_proxy").await;
    e2e.create_db("direct").await;
    let work = harness::workdir(M::NAME);
    let dir = work.path();
    M::prepare(dir);
    let files = M::migrations(dir);

    // A first deploy: the whole history in one run, on an empty database.
    e2e.create_db("first_deploy").await;
    let run = M::up(&e2e, Via::Proxy, "first_deploy", dir, false)
        .run()
        .await;
    if M::ONE_TRANSACTION_PER_RUN {
        assert!(
            run.success(),
            "one transaction that created the tables: nothing in it is refused, the rename included:\n{run}"
        );
        run.assert_silent_on(&["ERROR", "DG00"]);
        assert_applied::<M>(&e2e, "first_deploy", &files, "holds the whole history").await;
    } else {
        assert!(
            !run.success(),
            "the rename runs in a later transaction than the CREATE TABLE:\n{run}"
        );
        run.assert_says(&["ddlgate blocked this statement", "renaming-column"]);
        assert_applied::<M>(
            &e2e,
            "first_deploy",
            &files[..RENAME],
            "holds those before the rename",
        )
        .await;
    }

    let run = M::up(&e2e, Via::Proxy, "via_proxy", dir, true).ok().await;
    run.assert_silent_on(&["ERROR", "DG00"]);
    assert_applied::<M>(&e2e, "via_proxy", &files[..1], "holds the first migration").await;

    let run = up_all::<M>(&e2e, dir, false).await;
    run.assert_says(&["ddlgate blocked this statement", "renaming-column"]);
    for (_, rule, _, _) in REFUSED_ON_BIG_TABLES {
        run.assert_silent_on(&[rule]);
    }
    if M::ONE_TRANSACTION_PER_RUN {
        assert_applied::<M>(
            &e2e,
            "via_proxy",
            &files[..1],
            "holds none of the failed run",
        )
        .await;
        assert_eq!(
            count(&e2e, "via_proxy", STATUS_COLUMN).await,
            "0",
            "the failed run rolled back its first migration too"
        );
    } else {
        assert_applied::<M>(
            &e2e,
            "via_proxy",
            &files[..RENAME],
            "holds those before the rename",
        )
        .await;
    }
    M::allow_rename(&files[RENAME], true, &override_for::<M>(&run));
    let run = up_all::<M>(&e2e, dir, true).await;
    run.assert_silent_on(&["ERROR", "DG00"]);
    assert_applied::<M>(&e2e, "via_proxy", &files, "holds the whole history").await;

    M::up(&e2e, Via::Direct, "direct", dir, true).ok().await;
    M::up(&e2e, Via::Direct, "direct", dir, false).ok().await;
    e2e.assert_same_schema("via_proxy", "direct", &[]).await;
    if M::ONE_TRANSACTION_PER_RUN {
        e2e.assert_same_schema("first_deploy", "direct", &[]).await;
    }

    down_path::<M>(&e2e, Via::Proxy, "via_proxy", dir, &files).await;
    down_path::<M>(&e2e, Via::Direct, "direct", dir, &files).await;
    e2e.assert_same_schema("via_proxy", "direct", &[]).await;
    let first_deploy_blocks = u64::from(!M::ONE_TRANSACTION_PER_RUN);
    assert_eq!(
        decisions(&e2e),
        (2 + first_deploy_blocks, 0, 2),
        "blocked: the rename and the rename back (and the first deploy's rename, each migration in its own transaction), nothing rewritten, both allowed by override"
    );
}

/// Big tables (filled above the small-table thresholds right after the first migration),
/// a writer on `orders` throughout, every pending migration in one run of the tool, as a
/// user runs it. Each run stops at the next migration that builds an index or adds a
/// constraint inside the tool's transaction: refused with the rule (and, where the tool prints
/// it, the hint with the tool's way out), not recorded, nothing of it left. The user takes the
/// way out (the migration's opt-out of the transaction) and runs again: the migration applies
/// in its safe form. The rename is refused and allowed as on fresh tables. In the end every
/// index is valid and every constraint validated, the writer never waited longer than
/// lock_timeout + 1 s, and the schema equals the final history applied directly.
pub async fn big_tables<M: Migrator>() {
    let e2e = E2e::start().await;
    e2e.create_db("via_proxy").await;
    e2e.create_db("direct").await;
    let work = harness::workdir(M::NAME);
    let dir = work.path();
    M::prepare(dir);
    let files = M::migrations(dir);
    for (via, db) in [(Via::Proxy, "via_proxy"), (Via::Direct, "direct")] {
        M::up(&e2e, via, db, dir, true).ok().await;
        e2e.fill_accounts_and_orders(db).await;
    }
    let writer = Writer::start(&e2e, "via_proxy", WRITE).await;

    let mut previous_rule: Option<&str> = None;
    let mut opted_out = false;
    for (k, rule, probe, detail) in REFUSED_ON_BIG_TABLES {
        let before = applied::<M>(&e2e, "via_proxy").await;
        let run = up_all::<M>(&e2e, dir, false).await;
        run.assert_says(&["ddlgate blocked this statement", rule]);
        if M::SHOWS_HINT {
            run.assert_says(&[detail, "cannot run inside a transaction", M::WAY_OUT]);
        } else if M::KNOWN_BY_VERSION_TABLE {
            run.assert_says(&[M::WAY_OUT, "To run it as written: /* ddlgate:allow"]);
        } else {
            // A tool ddlgate cannot name (dbmate) still reads the way out in general words.
            run.assert_says(&["Safe way: run it as its own statement outside any transaction"]);
        }
        if let (true, Some(prev)) = (M::SHOWS_NOTICES, previous_rule) {
            run.assert_says(&["NOTICE: ddlgate", prev]);
        }
        if M::ONE_TRANSACTION_PER_RUN && !opted_out {
            assert_eq!(
                applied::<M>(&e2e, "via_proxy").await,
                before,
                "the failed run was one transaction: nothing of it is recorded"
            );
        } else {
            assert_applied::<M>(
                &e2e,
                "via_proxy",
                &files[..k],
                "holds what ran before the refused migration",
            )
            .await;
        }
        assert_eq!(
            count(&e2e, "via_proxy", probe).await,
            "0",
            "migration {k} left something behind after its refusal:\n{run}"
        );
        // The schema agrees with the version table: the status column (migration 1) is
        // there exactly when the tool recorded that migration.
        let recorded = applied::<M>(&e2e, "via_proxy")
            .await
            .contains(&M::recorded_name(&files[1]));
        assert_eq!(
            count(&e2e, "via_proxy", STATUS_COLUMN).await,
            if recorded { "1" } else { "0" },
            "the status column and the version table disagree after the refusal of {k}:\n{run}"
        );
        M::opt_out(&files[k]);
        opted_out = true;
        previous_rule = Some(rule);
    }

    let run = up_all::<M>(&e2e, dir, false).await;
    run.assert_says(&["ddlgate blocked this statement", "renaming-column"]);
    if M::SHOWS_NOTICES {
        run.assert_says(&["NOTICE: ddlgate", "adding-not-nullable-field"]);
    }
    assert_applied::<M>(
        &e2e,
        "via_proxy",
        &files[..RENAME],
        "holds all before the rename",
    )
    .await;
    M::allow_rename(&files[RENAME], true, &override_for::<M>(&run));
    let run = up_all::<M>(&e2e, dir, true).await;
    run.assert_silent_on(&["ERROR", "DG00"]);
    if M::SHOWS_NOTICES {
        run.assert_says(&["WARNING: ddlgate", "ban-drop-column"]);
    }
    assert_applied::<M>(&e2e, "via_proxy", &files, "holds the whole history").await;
    for (_, _, probe, _) in REFUSED_ON_BIG_TABLES {
        assert_eq!(count(&e2e, "via_proxy", probe).await, "1", "{probe}");
    }
    assert_eq!(
        count(
            &e2e,
            "via_proxy",
            "SELECT count(*) FROM pg_index WHERE indrelid IN ('orders'::regclass, 'accounts'::regclass) AND NOT (indisvalid AND indisready)"
        )
        .await,
        "0",
        "every index is valid"
    );
    assert_eq!(
        count(
            &e2e,
            "via_proxy",
            "SELECT count(*) FROM pg_constraint WHERE conrelid IN ('orders'::regclass, 'accounts'::regclass) AND NOT convalidated"
        )
        .await,
        "0",
        "every constraint is validated"
    );
    writer.stop_and_check().await;
    assert_eq!(
        decisions(&e2e),
        (5, 4, 1),
        "blocked: the four in the transaction and the rename; rewritten: the four on their own; the rename allowed by override"
    );

    M::up(&e2e, Via::Direct, "direct", dir, false).ok().await;
    e2e.assert_same_schema("via_proxy", "direct", &[]).await;
}

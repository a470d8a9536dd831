//! `large-backfill`: an UPDATE, DELETE or MERGE (also one inside `WITH`) that the planner estimates
//! will modify more rows than the profile's `backfill.max_rows` (the backfill guard,
//! `[policy.backfill]`, off by default).
//!
//! - **Lock:** ROW EXCLUSIVE on the table, and a row lock on every modified row until the
//!   transaction ends: every other writer of those rows waits for the whole statement (and its
//!   transaction), however long it runs.
//! - **Risk:** one long transaction that writes a new version of every row: table and index
//!   bloat (vacuum cannot clean up behind it while it runs), a burst of WAL that replicas must
//!   replay (replication lag), and a rollback of everything if it fails at the end.
//! - **Safe alternative:** batches, each its own short transaction: `ddlgate backfill
//!   --database URL --table T --set "…" --where "…" [--batch-size N]` (a DELETE: `--delete
//!   --where "…"`), or a keyset loop over the primary key in plain SQL (the hint spells it out).
//!   A MERGE has no `ddlgate backfill` form: its hint restricts the source to key ranges.
//! - **Rewrite:** no. Default: warn (the action is `backfill.action` unless a rules table
//!   names this rule).
//! - **How it is found:** not from the statement's shape — ddlgate never parses DML — but from
//!   the planner's estimate, read with `EXPLAIN (FORMAT JSON)` (never ANALYZE: the statement
//!   does not run) on the session's own connection at a statement boundary
//!   (`catalog::estimate`). The rule's [`Rule::check`] therefore finds nothing in a parsed
//!   statement; [`finding`] builds the finding from the estimate. The rule is registered so
//!   that it is listed by `ddlgate rules`, configurable, overridable with
//!   `/* ddlgate:allow large-backfill reason="…" */`, counted and audited like any other.
//!
//! <https://www.postgresql.org/docs/current/sql-update.html>,
//! <https://www.postgresql.org/docs/current/sql-explain.html>

use super::{Action, Context, Finding, Rule};
use crate::catalog::estimate::Modification;
use crate::sql::statement::Ddl;

pub static RULE: Rule = Rule {
    id: "large-backfill",
    lock: "ROW EXCLUSIVE on the table and a row lock on every modified row until the transaction ends: writers of those rows wait",
    summary: "UPDATE/DELETE/MERGE the planner estimates above backfill.max_rows rows (backfill guard, opt-in)",
    default_action: Action::Warn,
    check,
};

/// DDL never is an UPDATE or DELETE: the finding comes from the planner (see [`finding`]).
fn check(_: &Ddl, _: &Context) -> Option<Finding> {
    None
}

/// The finding for a statement whose ModifyTable the planner estimates at `rows` rows, above
/// `max_rows`. `delete`: a DELETE (else an UPDATE); `table`: the target the plan names.
pub fn finding(op: Modification, table: Option<&str>, rows: u64, max_rows: u64) -> Finding {
    let verb = op.command();
    let on = match (op, table) {
        (_, None) => String::new(),
        (Modification::Merge, Some(t)) => format!(" into {t}"),
        (_, Some(t)) => format!(" of {t}"),
    };
    let t = table.unwrap_or("T");
    let message = format!(
        "{verb}{on} is estimated to {} about {rows} rows (the planner's estimate; this profile's backfill threshold is {max_rows}): one statement holds a row lock on every row it changes until its transaction ends, and writes them all in one transaction (table bloat, a burst of WAL, replication lag)",
        match op {
            Modification::Update => "update",
            Modification::Delete => "delete",
            Modification::Merge => "touch",
        }
    );
    let hint = if op == Modification::Merge {
        "Merge in batches, each its own short transaction: restrict the source (USING …) to one key range per statement, e.g. `… WHERE src.id > :last AND src.id <= :last + 1000`, and repeat over the whole range, pausing between batches."
        .to_owned()
    } else if op == Modification::Delete {
        format!(
            "Delete in batches, each its own short transaction: `ddlgate backfill --database URL --table {t} --delete --where \"…\" [--batch-size N]`, or in plain SQL repeat `WITH batch AS (SELECT id FROM {t} WHERE (…) ORDER BY id LIMIT 1000) DELETE FROM {t} USING batch WHERE {t}.id = batch.id` (id: the primary key), committing each batch, until it deletes 0 rows, pausing between batches."
        )
    } else {
        format!(
            "Backfill in batches, each its own short transaction: `ddlgate backfill --database URL --table {t} --set \"…\" --where \"…\" [--batch-size N]`, or in plain SQL a keyset loop over the primary key (id), committing each batch: `WITH batch AS (SELECT id FROM {t} WHERE id > :last AND (…) ORDER BY id LIMIT 1000) UPDATE {t} SET … FROM batch WHERE {t}.id = batch.id RETURNING {t}.id`, then :last = the largest id returned, until none is."
        )
    };
    Finding {
        rule: RULE.id,
        message,
        hint,
        rewrite: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_finding_says_the_estimate_the_threshold_and_the_batched_way() {
        let f = finding(Modification::Update, Some("users"), 250_000, 100_000);
        assert!(f.message.contains("about 250000 rows"), "{}", f.message);
        assert!(f.message.contains("threshold is 100000"), "{}", f.message);
        assert!(
            f.hint.contains(
                "ddlgate backfill --database URL --table users --set \"…\" --where \"…\" [--batch-size N]"
            ),
            "{}",
            f.hint
        );
        assert!(f.hint.contains("ORDER BY id LIMIT 1000"), "{}", f.hint);
        let d = finding(Modification::Delete, None, 5, 1);
        assert!(
            d.message.starts_with("DELETE is estimated"),
            "{}",
            d.message
        );
        // ddlgate backfill first, the plain-SQL loop as the alternative.
        let tool = d
            .hint
            .find("`ddlgate backfill --database URL --table T --delete --where \"…\" [--batch-size N]`")
            .expect(&d.hint);
        let loop_at = d
            .hint
            .find("DELETE FROM T USING batch WHERE T.id = batch.id")
            .expect(&d.hint);
        assert!(tool < loop_at, "{}", d.hint);
        assert!(!d.hint.contains("--set"), "{}", d.hint);
        let named = finding(Modification::Delete, Some("events"), 5, 1);
        assert!(
            named.hint.contains("--table events --delete --where"),
            "{}",
            named.hint
        );
        let m = finding(Modification::Merge, Some("t"), 5, 1);
        assert!(
            m.message.starts_with("MERGE into t is estimated to touch"),
            "{}",
            m.message
        );
        assert!(m.hint.starts_with("Merge in batches"), "{}", m.hint);
        assert!(!m.hint.contains("ddlgate backfill"), "{}", m.hint);
        // Never found in a parsed statement.
        crate::rules::testing::table(
            &RULE,
            &crate::rules::testing::Ctx::default(),
            &["TRUNCATE t", "ALTER TABLE t ADD COLUMN c int"],
            &[],
        );
    }
}

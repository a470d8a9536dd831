//! `changing-column-type`: `ALTER COLUMN … TYPE`.
//!
//! - **Lock:** ACCESS EXCLUSIVE. Unless the old type is binary-coercible to the new one, the
//!   table and all its indexes are rewritten while the lock is held — every read and write
//!   waits. Clients may also break on the new type.
//! - **Known-safe changes (B14):** `varchar(n)` → `varchar(m ≥ n)` / `text` / unbounded
//!   `varchar`, `text` → unbounded `varchar`, `numeric(p,s)` → `numeric(p' ≥ p,s)` or unbounded
//!   `numeric`, `varbit(n)` → `varbit(m ≥ n)`, a larger `timestamp`/`time`/`interval`
//!   precision, `cidr` → `inet` rewrite nothing ([`crate::catalog::type_change`] mirrors the
//!   server's own test). Telling them apart needs the column's current type, so:
//!   - **without the catalog** every type change is flagged (as squawk does) and the message
//!     says "may rewrite";
//!   - **with the catalog** a change that rewrites nothing passes — unless it still holds the
//!     lock for long: PostgreSQL re-checks every CHECK constraint on the column with a full
//!     scan (B15), and rebuilds the column's indexes when their operator class or collation
//!     changes (`text` ↔ `citext`, `timestamp` ↔ `timestamptz` in a UTC session, a column
//!     with a non-default collation) or when they are expression or partial indexes. A change
//!     that does rewrite is reported as such, with the table's size. A `USING` clause counts
//!     as a rewrite, unless it only casts the column to the new type (`USING c::t`, which
//!     knex's `.alter()` writes on every column change): PostgreSQL applies that conversion
//!     without one too (`sql::parse`). The target type is the one the server resolves the name to with the
//!     session's search_path (`to_regtype`, compared by OID): a domain or type named like a
//!     built-in (`CREATE DOMAIN s.text AS integer` with `s` before `pg_catalog` in
//!     search_path) is not the built-in, and counts as a rewrite.
//! - **Safe alternative:** expand/contract (R11): add a new column, keep it in sync with a
//!   trigger, backfill in batches, build indexes and constraints concurrently, switch the
//!   application over, then drop the old column.
//! - **Rewrite:** no.
//! - **Not flagged:** tables created earlier in the same transaction.
//! - **Small tables:** not flagged — the scan or rewrite takes milliseconds — when the table shown small
//!   ([`crate::catalog::Relation::is_small`]; the thresholds are `catalog.small_table_*`).
//!
//! <https://www.postgresql.org/docs/current/sql-altertable.html#SQL-ALTERTABLE-NOTES>

use super::{Action, Context, Finding, Rule};
use crate::catalog::{self, ColumnFacts, Relation, TypeChange};
use crate::sql::statement::{AlterOp, Ddl, Name, Understood};

pub static RULE: Rule = Rule {
    id: "changing-column-type",
    lock: "ACCESS EXCLUSIVE, with a table and index rewrite unless the types are binary-coercible: blocks every read and write",
    summary: "ALTER COLUMN … TYPE",
    default_action: Action::Block,
    check,
};

fn check(ddl: &Ddl, ctx: &Context) -> Option<Finding> {
    let (table, ops) = ctx.altered_existing_table(ddl)?;
    // The small-table allowance: on a table the catalog shows small the scan/rewrite
    // finishes in milliseconds, so the statement runs as written.
    if ctx.is_small(table) {
        return None;
    }
    ops.iter().find_map(|op| match op {
        AlterOp::AlterColumnType {
            column,
            data_type,
            using,
        } => verdict(ddl, table, column, data_type, *using, ctx),
        _ => None,
    })
}

/// One type change: with the column's facts, flag only what rewrites or holds the lock for a
/// scan or an index rebuild; without them, flag it.
fn verdict(
    ddl: &Ddl,
    table: &Name,
    column: &str,
    data_type: &str,
    using: bool,
    ctx: &Context,
) -> Option<Finding> {
    let known = ctx.catalog.and_then(|facts| {
        let relation = facts.relation_for(table)?;
        let col = facts.column(table, column).filter(|c| c.exists)?;
        let from = col.data_type.as_ref()?;
        Some((facts, relation, col, from))
    });
    let Some((facts, relation, col, from)) = known else {
        return Some(finding(
            format!(
                "Changing {table}.{column} to {data_type} may rewrite {table} and all its indexes under an ACCESS EXCLUSIVE lock, blocking every read and write for the whole rewrite; clients may also break on the new type."
            ),
            column,
            data_type,
        ));
    };
    let size = relation.size_description();
    let old = &from.formatted;
    if using {
        return Some(finding(
            format!(
                "Changing {table}.{column} from {old} to {data_type} with a USING expression rewrites {table} ({size}) and all its indexes under an ACCESS EXCLUSIVE lock, blocking every read and write for the whole rewrite; clients may also break on the new type."
            ),
            column,
            data_type,
        ));
    }
    // The session time zone only matters from PostgreSQL 12; before, the change always
    // rewrote.
    let timezone = if ctx.at_least(12) {
        facts.timezone.as_deref()
    } else {
        None
    };
    // Decided on the type the server resolves the name to (with the session's search_path), not
    // on the name as written: `text` may be a user's domain over integer.
    let change = if catalog::type_resolves_as_written(facts, data_type)
        && catalog::column_type_is_as_named(col)
    {
        catalog::type_change(from, data_type, timezone)
    } else {
        TypeChange::Unknown
    };
    match change {
        TypeChange::Unknown => Some(finding(
            format!(
                "Changing {table}.{column} from {old} to {data_type} may rewrite {table} ({size}) and all its indexes under an ACCESS EXCLUSIVE lock, blocking every read and write for the whole rewrite; clients may also break on the new type."
            ),
            column,
            data_type,
        )),
        TypeChange::Rewrites => Some(finding(
            format!(
                "Changing {table}.{column} from {old} to {data_type} rewrites {table} ({size}) and all its indexes under an ACCESS EXCLUSIVE lock, blocking every read and write for the whole rewrite; clients may also break on the new type."
            ),
            column,
            data_type,
        )),
        TypeChange::Free | TypeChange::RebuildsIndexes => {
            lock_held_anyway(ddl, table, relation, col, data_type, change)
        }
    }
}

/// A change that rewrites nothing can still hold ACCESS EXCLUSIVE for long: CHECK
/// constraints on the column are re-validated with a full scan, and indexes PostgreSQL cannot
/// prove unchanged are rebuilt.
fn lock_held_anyway(
    ddl: &Ddl,
    table: &Name,
    relation: &Relation,
    col: &ColumnFacts,
    data_type: &str,
    change: TypeChange,
) -> Option<Finding> {
    // Without COLLATE the column takes the new type's default collation; the fallback
    // classifier (which handles COLLATE) does not keep the clause, so a statement it read may
    // change the collation too.
    let collation_changes = catalog::is_collatable(data_type)
        && (col.collation.is_some() || ddl.understood != Understood::Parsed);
    let rebuilt: Vec<&str> = col
        .indexes
        .iter()
        .filter(|i| change == TypeChange::RebuildsIndexes || !i.plain || collation_changes)
        .map(|i| i.name.as_str())
        .collect();
    if rebuilt.is_empty() && col.checks.is_empty() {
        return None;
    }
    let column = &col.name;
    let size = relation.size_description();
    let mut costs = Vec::new();
    if !rebuilt.is_empty() {
        costs.push(format!("rebuilds the index(es) {}", rebuilt.join(", ")));
    }
    if !col.checks.is_empty() {
        costs.push(format!(
            "re-checks the CHECK constraint(s) {} with a full scan",
            col.checks.join(", ")
        ));
    }
    Some(Finding {
        rule: RULE.id,
        message: format!(
            "Changing {table}.{column} to {data_type} does not rewrite {table}, but it {} while holding an ACCESS EXCLUSIVE lock on {table} ({size}): every read and write waits until that finishes.",
            costs.join(" and ")
        ),
        hint: format!(
            "Drop the CHECK constraints and expression or partial indexes on {column} first and re-create them afterwards (CHECK … NOT VALID then VALIDATE CONSTRAINT; CREATE INDEX CONCURRENTLY), or use expand/contract: add a new column of type {data_type}, keep it in sync with a trigger, backfill in batches, switch the application over, then drop {column}."
        ),
        rewrite: None,
    })
}

fn finding(message: String, column: &str, data_type: &str) -> Finding {
    Finding {
        rule: RULE.id,
        message,
        hint: format!(
            "Use expand/contract: add a new column of type {data_type}, keep it in sync with a trigger, backfill in batches, build its indexes and constraints concurrently, switch the application over, then drop {column}. Changes PostgreSQL needs no rewrite for (varchar(n) to varchar(m ≥ n) or text, a larger numeric precision) pass when ddlgate knows the column's current type from the catalog."
        ),
        rewrite: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::testing::{column, facts, table};
    use crate::catalog::{ColumnFacts, ColumnIndex, Facts};
    use crate::rules::testing::{self, Ctx, run};
    use crate::sql::statement::Name;

    #[test]
    fn flags_every_type_change() {
        testing::table(
            &RULE,
            &Ctx::default(),
            &[
                "ALTER TABLE t ALTER COLUMN c SET DEFAULT 0",
                "ALTER TABLE t ALTER COLUMN c DROP NOT NULL",
                "ALTER TABLE t ADD COLUMN c bigint",
                "CREATE TABLE t (c bigint)",
            ],
            &[
                "ALTER TABLE t ALTER COLUMN c TYPE bigint",
                "alter table s.t alter c type text",
                "ALTER TABLE t ALTER COLUMN c SET DATA TYPE varchar(200)",
                "ALTER TABLE t ALTER COLUMN c TYPE bigint USING c::bigint",
                "ALTER TABLE t ALTER COLUMN a SET DEFAULT 1, ALTER COLUMN c TYPE numeric(12,2)",
            ],
        );
    }

    #[test]
    fn message_says_may_rewrite_and_names_the_column() {
        let f = run(
            &RULE,
            "ALTER TABLE orders ALTER COLUMN total TYPE numeric(12,2)",
            &Ctx::default(),
        )
        .expect("flagged");
        assert!(
            f.message
                .contains("orders.total to numeric(12,2) may rewrite"),
            "{}",
            f.message
        );
    }

    fn with(columns: Vec<ColumnFacts>) -> Ctx {
        Ctx {
            catalog: Some(facts(table("orders", 5_000_000, 900 << 20), columns)),
            ..Ctx::default()
        }
    }

    fn varchar20() -> ColumnFacts {
        column("c", "character varying(20)", 1043, 24)
    }

    fn index(name: &str, plain: bool) -> ColumnIndex {
        ColumnIndex {
            name: name.to_owned(),
            plain,
        }
    }

    #[test]
    fn catalog_decides_whether_it_rewrites() {
        let with_check = ColumnFacts {
            checks: vec!["c_len".into()],
            ..varchar20()
        };
        let with_plain_index = ColumnFacts {
            indexes: vec![index("orders_c_idx", true)],
            ..varchar20()
        };
        let with_expression_index = ColumnFacts {
            indexes: vec![index("orders_lower_c", false)],
            ..varchar20()
        };
        let collated = ColumnFacts {
            collation: Some("C".into()),
            ..with_plain_index.clone()
        };
        let text_indexed = ColumnFacts {
            indexes: vec![index("orders_t_idx", true)],
            ..column("t", "text", 25, -1)
        };
        let numeric = column("n", "numeric(10,2)", 1700, (10 << 16 | 2) + 4);
        let ts = column("ts", "timestamp without time zone", 1114, -1);
        let berlin = Ctx {
            catalog: Some(Facts {
                timezone: Some("Europe/Berlin".into()),
                ..facts(table("orders", 5_000_000, 900 << 20), vec![ts.clone()])
            }),
            ..Ctx::default()
        };
        let pg11 = Ctx {
            version: Some(110_000),
            ..with(vec![ts.clone()])
        };
        // (context, statement, None = passes / Some(text the message must contain))
        let cases: Vec<(Ctx, &str, Option<&str>)> = vec![
            (
                with(vec![varchar20()]),
                "ALTER TABLE orders ALTER COLUMN c TYPE varchar(50)",
                None,
            ),
            (
                with(vec![varchar20()]),
                "ALTER TABLE orders ALTER COLUMN c TYPE text",
                None,
            ),
            (
                with(vec![varchar20()]),
                "ALTER TABLE orders ALTER c SET DATA TYPE character varying",
                None,
            ),
            (
                with(vec![varchar20()]),
                "ALTER TABLE orders ALTER COLUMN c TYPE varchar(10)",
                Some(
                    "from character varying(20) to varchar(10) rewrites orders (about 5000000 rows, 900 MB)",
                ),
            ),
            (
                with(vec![varchar20()]),
                "ALTER TABLE orders ALTER COLUMN c TYPE text USING c || ''",
                Some("with a USING expression rewrites orders"),
            ),
            // knex's `.alter()`: a USING that only casts the column to the new type.
            (
                with(vec![varchar20()]),
                r#"alter table "orders" alter column "c" type text using ("c"::text)"#,
                None,
            ),
            (
                with(vec![varchar20()]),
                "ALTER TABLE orders ALTER COLUMN c TYPE my_domain",
                Some("to my_domain may rewrite orders (about 5000000 rows"),
            ),
            (
                with(vec![numeric.clone()]),
                "ALTER TABLE orders ALTER COLUMN n TYPE numeric(12,2)",
                None,
            ),
            (
                with(vec![numeric.clone()]),
                "ALTER TABLE orders ALTER COLUMN n TYPE numeric",
                None,
            ),
            (
                with(vec![numeric.clone()]),
                "ALTER TABLE orders ALTER COLUMN n TYPE numeric(12,4)",
                Some("rewrites orders"),
            ),
            (
                with(vec![with_check]),
                "ALTER TABLE orders ALTER COLUMN c TYPE text",
                Some(
                    "does not rewrite orders, but it re-checks the CHECK constraint(s) c_len with a full scan",
                ),
            ),
            (
                with(vec![with_plain_index.clone()]),
                "ALTER TABLE orders ALTER COLUMN c TYPE text",
                None,
            ),
            (
                with(vec![with_expression_index]),
                "ALTER TABLE orders ALTER COLUMN c TYPE varchar(30)",
                Some("rebuilds the index(es) orders_lower_c"),
            ),
            (
                with(vec![collated]),
                "ALTER TABLE orders ALTER COLUMN c TYPE text",
                Some("rebuilds the index(es) orders_c_idx"),
            ),
            // The fallback classifier drops COLLATE: an indexed column may change collation.
            (
                with(vec![with_plain_index]),
                "ALTER TABLE orders ALTER COLUMN c TYPE text COLLATE \"C\"",
                Some("rebuilds the index(es) orders_c_idx"),
            ),
            (
                with(vec![varchar20()]),
                "ALTER TABLE orders ALTER COLUMN c TYPE text COLLATE \"C\"",
                None,
            ),
            (
                with(vec![text_indexed.clone()]),
                "ALTER TABLE orders ALTER COLUMN t TYPE citext",
                Some("rebuilds the index(es) orders_t_idx"),
            ),
            (
                with(vec![ColumnFacts {
                    indexes: vec![],
                    ..text_indexed
                }]),
                "ALTER TABLE orders ALTER COLUMN t TYPE citext",
                None,
            ),
            (
                with(vec![ts.clone()]),
                "ALTER TABLE orders ALTER COLUMN ts TYPE timestamptz",
                None,
            ),
            (
                berlin,
                "ALTER TABLE orders ALTER COLUMN ts TYPE timestamptz",
                Some("rewrites orders (about 5000000 rows, 900 MB)"),
            ),
            // Before 12 the UTC shortcut does not exist: no time zone is passed, so unknown.
            (
                pg11,
                "ALTER TABLE orders ALTER COLUMN ts TYPE timestamptz",
                Some("may rewrite"),
            ),
            // Every type change counts, not only the first.
            (
                with(vec![varchar20(), numeric]),
                "ALTER TABLE orders ALTER COLUMN c TYPE text, ALTER COLUMN n TYPE bigint",
                Some("orders.n from numeric(10,2) to bigint rewrites"),
            ),
            // Facts that do not cover the column or the table change nothing.
            (
                with(vec![varchar20()]),
                "ALTER TABLE orders ALTER COLUMN other TYPE text",
                Some("orders.other to text may rewrite orders and all its indexes"),
            ),
            (
                with(vec![varchar20()]),
                "ALTER TABLE public.orders ALTER COLUMN c TYPE text",
                Some("public.orders.c to text may rewrite"),
            ),
            (
                with(vec![ColumnFacts {
                    exists: false,
                    data_type: None,
                    ..varchar20()
                }]),
                "ALTER TABLE orders ALTER COLUMN c TYPE text",
                Some("may rewrite"),
            ),
        ];
        for (ctx, sql, expected) in cases {
            let got = run(&RULE, sql, &ctx);
            match expected {
                None => assert_eq!(got, None, "{sql} must pass"),
                Some(text) => {
                    let f = got.unwrap_or_else(|| panic!("{sql} must be flagged"));
                    assert!(f.message.contains(text), "{sql}: {}", f.message);
                    assert!(!f.hint.is_empty() && f.rewrite.is_none());
                }
            }
        }
    }

    #[test]
    fn tables_created_in_the_transaction_are_exempt() {
        let mut ctx = Ctx::in_tx();
        ctx.created.insert(Name::bare("fresh"));
        assert_eq!(
            run(&RULE, "ALTER TABLE fresh ALTER COLUMN c TYPE bigint", &ctx),
            None
        );
        assert!(run(&RULE, "ALTER TABLE other ALTER COLUMN c TYPE bigint", &ctx).is_some());
    }

    #[test]
    fn the_target_type_is_the_one_the_server_resolves() {
        let stmt = "ALTER TABLE orders ALTER COLUMN c TYPE text";
        assert_eq!(run(&RULE, stmt, &with(vec![varchar20()])), None);
        // `text` resolves to a domain s.text (search_path = s, pg_catalog), or to nothing, or
        // the facts did not resolve it at all: the built-in's verdict does not apply.
        for resolved in [Some(16_500), None] {
            let mut ctx = with(vec![varchar20()]);
            let facts = ctx.catalog.as_mut().expect("facts");
            for t in facts.types.iter_mut().filter(|t| t.asked == "text") {
                t.oid = resolved;
            }
            let f = run(&RULE, stmt, &ctx).expect("flagged");
            assert!(f.message.contains("may rewrite"), "{}", f.message);
        }
        let mut ctx = with(vec![varchar20()]);
        ctx.catalog.as_mut().expect("facts").types.clear();
        assert!(run(&RULE, stmt, &ctx).is_some());
        // citext counts only when it is the extension's own type.
        let stmt = "ALTER TABLE orders ALTER COLUMN c TYPE citext";
        let mut ctx = with(vec![column("c", "text", 25, -1)]);
        assert_eq!(run(&RULE, stmt, &ctx), None);
        for t in ctx.catalog.as_mut().expect("facts").types.iter_mut() {
            t.citext = false;
        }
        assert!(run(&RULE, stmt, &ctx).is_some());
        // The same on the column's side: a domain called citext is not the extension's type.
        let stmt = "ALTER TABLE orders ALTER COLUMN c TYPE text";
        let fake = ColumnFacts {
            type_is_citext: Some(false),
            ..column("c", "citext", 16_500, -1)
        };
        assert!(run(&RULE, stmt, &with(vec![fake])).is_some());
        assert_eq!(
            run(&RULE, stmt, &with(vec![column("c", "citext", 16_385, -1)])),
            None
        );
    }
}

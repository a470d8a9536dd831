//! `adding-field-with-default`: `ADD COLUMN` whose value PostgreSQL must compute row by row —
//! a volatile DEFAULT, any DEFAULT before PostgreSQL 11, or a `GENERATED ALWAYS AS (…) STORED`
//! column.
//!
//! - **Lock:** ACCESS EXCLUSIVE for a full rewrite of the table and its indexes — every read
//!   and write waits for the whole rewrite. From PostgreSQL 11 a non-volatile default (a
//!   literal, `now()`, `CURRENT_TIMESTAMP`, `'{}'::jsonb`) is evaluated once and stored in the
//!   catalog, so no rewrite happens.
//! - **Volatility:** with the catalog, a function counts by `pg_proc.provolatile` of every
//!   overload of that name (the model only has the unqualified name): all STABLE or IMMUTABLE
//!   passes, any VOLATILE overload is flagged — so user functions marked STABLE or IMMUTABLE
//!   pass. Names the catalog has no function for (`coalesce`, `cast`, … are syntax), and every
//!   name when there is no catalog, go by a built-in list: known volatile functions
//!   (`gen_random_uuid`, `uuid_generate_v4`, `random`, `clock_timestamp`, `nextval`, …) are
//!   flagged, and so is any function *not* on a list of known non-volatile built-ins and
//!   casts — "assume volatile when unsure", as strong_migrations does.
//! - **Safe alternative:** add the column without a default, `SET DEFAULT` for new rows, then
//!   backfill in batches (R10); for a stored generated column, a plain column filled by a
//!   trigger plus a batched backfill (R16).
//! - **Rewrite:** no — the safe form needs a backfill, which changes what old rows hold until
//!   it has run.
//! - **Not flagged:** tables created earlier in the same transaction; non-volatile defaults on
//!   PostgreSQL 11+; `VIRTUAL` generated columns (PostgreSQL 18, never rewrite); serial and
//!   identity columns (`adding-auto-increment-column`).
//! - **Small tables:** not flagged — the scan or rewrite takes milliseconds — when the table shown small
//!   ([`crate::catalog::Relation::is_small`]; the thresholds are `catalog.small_table_*`).
//!
//! <https://www.postgresql.org/docs/current/sql-altertable.html#SQL-ALTERTABLE-NOTES>

use super::{Action, Context, Finding, Rule};
use crate::catalog::{Facts, Volatility};
use crate::sql::statement::{AddColumn, AlterOp, Ddl, Name};

pub static RULE: Rule = Rule {
    id: "adding-field-with-default",
    lock: "ACCESS EXCLUSIVE for a full table and index rewrite: blocks every read and write",
    summary: "ADD COLUMN with a volatile DEFAULT (any DEFAULT before PostgreSQL 11) or a STORED generated column",
    default_action: Action::Block,
    check,
};

/// Built-in functions known to be VOLATILE: a DEFAULT calling them is evaluated per row.
const VOLATILE: &[&str] = &[
    "gen_random_uuid",
    "uuid_generate_v1",
    "uuid_generate_v1mc",
    "uuid_generate_v4",
    "uuidv4",
    "uuidv7",
    "random",
    "random_normal",
    "clock_timestamp",
    "timeofday",
    "nextval",
    "currval",
    "lastval",
    "txid_current",
    "pg_current_xact_id",
];

/// Built-in functions known to be STABLE or IMMUTABLE (a DEFAULT calling only these is
/// evaluated once on PostgreSQL 11+), plus `CAST` and the type names that show up as calls in
/// casts with a type modifier (`'x'::varchar(20)`, `0::numeric(12,2)`) or function-style casts
/// (`int4(1)`). Anything else is assumed volatile.
const NON_VOLATILE: &[&str] = &[
    // date and time (STABLE: one value per transaction)
    "now",
    "transaction_timestamp",
    "statement_timestamp",
    "current_date",
    "current_time",
    "current_timestamp",
    "localtime",
    "localtimestamp",
    "make_interval",
    "interval",
    "timezone",
    "date_trunc",
    // strings, JSON, arrays, arithmetic
    "lower",
    "upper",
    "coalesce",
    "length",
    "concat",
    "to_jsonb",
    "jsonb_build_object",
    "json_build_object",
    "array",
    "abs",
    "round",
    "greatest",
    "least",
    "nullif",
    "substring",
    "btrim",
    "trim",
    "replace",
    "md5",
    // casts
    "cast",
    "bit",
    "bool",
    "boolean",
    "bpchar",
    "char",
    "character",
    "date",
    "decimal",
    "float",
    "float4",
    "float8",
    "int",
    "int2",
    "int4",
    "int8",
    "integer",
    "bigint",
    "smallint",
    "numeric",
    "text",
    "time",
    "timestamp",
    "timestamptz",
    "timetz",
    "varbit",
    "varchar",
    "varying",
];

fn check(ddl: &Ddl, ctx: &Context) -> Option<Finding> {
    let (table, ops) = ctx.altered_existing_table(ddl)?;
    // The small-table allowance: on a table the catalog shows small the scan/rewrite
    // finishes in milliseconds, so the statement runs as written.
    if ctx.is_small(table) {
        return None;
    }
    // Facts read for this very statement (they name its table), or none.
    let facts = ctx.catalog.filter(|f| f.relation_for(table).is_some());
    ops.iter().find_map(|op| match op {
        AlterOp::AddColumn(column) => finding(table, column, ctx, facts),
        _ => None,
    })
}

/// What ddlgate knows about one called function.
enum Known {
    /// `pg_proc` has a VOLATILE overload.
    VolatileInCatalog,
    /// On the built-in list of volatile functions.
    VolatileBuiltIn,
    /// Every overload STABLE or IMMUTABLE, or on the built-in non-volatile list.
    NonVolatile,
    /// Neither the catalog nor the lists know it.
    Unknown,
}

fn volatility(function: &str, facts: Option<&Facts>) -> Known {
    if let Some(overloads) = facts.and_then(|f| f.volatility(function)) {
        if overloads.contains(&Volatility::Volatile) {
            Known::VolatileInCatalog
        } else {
            Known::NonVolatile
        }
    } else if VOLATILE.contains(&function) {
        Known::VolatileBuiltIn
    } else if NON_VOLATILE.contains(&function) {
        Known::NonVolatile
    } else {
        Known::Unknown
    }
}

fn finding(
    table: &Name,
    column: &AddColumn,
    ctx: &Context,
    facts: Option<&Facts>,
) -> Option<Finding> {
    let name = &column.name;
    if column.generated_stored {
        return Some(Finding {
            rule: RULE.id,
            message: format!(
                "Adding the stored generated column {name} rewrites all of {table} under an ACCESS EXCLUSIVE lock: every query on {table} waits until every row has been computed and written."
            ),
            hint: format!(
                "Add {name} as a plain nullable column, fill it from a BEFORE INSERT OR UPDATE trigger, and backfill existing rows in batches. On PostgreSQL 18 a VIRTUAL generated column adds without a rewrite, but is computed on read."
            ),
            rewrite: None,
        });
    }
    let default = column.default.as_ref()?;
    let message = if !ctx.at_least(11) {
        format!(
            "Before PostgreSQL 11 any DEFAULT on ADD COLUMN rewrites the table: adding {name} with DEFAULT {} locks {table} (ACCESS EXCLUSIVE) against every read and write for the whole rewrite.",
            default.text
        )
    } else if let Some((f, known)) =
        default
            .functions
            .iter()
            .find_map(|f| match volatility(f, facts) {
                k @ (Known::VolatileInCatalog | Known::VolatileBuiltIn) => Some((f, k)),
                _ => None,
            })
    {
        let source = match known {
            Known::VolatileInCatalog => " (pg_proc.provolatile = 'v')",
            _ => "",
        };
        format!(
            "DEFAULT {} calls the volatile function {f}(){source}, so adding {name} rewrites all of {table} under an ACCESS EXCLUSIVE lock: every query on {table} waits for the whole rewrite.",
            default.text
        )
    } else if let Some(f) = default
        .functions
        .iter()
        .find(|f| matches!(volatility(f, facts), Known::Unknown))
    {
        format!(
            "DEFAULT {} calls {f}(), which ddlgate cannot prove non-volatile, so adding {name} may rewrite all of {table} under an ACCESS EXCLUSIVE lock: every query on {table} would wait for the whole rewrite.",
            default.text
        )
    } else {
        return None;
    };
    Some(Finding {
        rule: RULE.id,
        message,
        hint: format!(
            "Add {name} without a default, then ALTER COLUMN {name} SET DEFAULT {} (new rows only), and backfill existing rows in batches outside the DDL transaction; add NOT NULL afterwards with the SET NOT NULL recipe.",
            default.text
        ),
        rewrite: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::FunctionFacts;
    use crate::catalog::testing::{facts, table as existing_table};
    use crate::rules::testing::{Ctx, run, table};
    use crate::sql::statement::DdlKind;
    use crate::sql::statement::Understood;

    const NON_VOLATILE_DEFAULTS: &[&str] = &[
        "ALTER TABLE t ADD COLUMN c int DEFAULT 0",
        "ALTER TABLE t ADD COLUMN c int NOT NULL DEFAULT 0",
        "ALTER TABLE t ADD COLUMN c timestamptz DEFAULT now()",
        "ALTER TABLE t ADD COLUMN c timestamptz NOT NULL DEFAULT CURRENT_TIMESTAMP",
        "ALTER TABLE t ADD COLUMN c timestamptz DEFAULT statement_timestamp()",
        "ALTER TABLE t ADD COLUMN c date DEFAULT CURRENT_DATE",
        "ALTER TABLE t ADD COLUMN c jsonb DEFAULT '{}'::jsonb",
        "ALTER TABLE t ADD COLUMN c text[] DEFAULT ARRAY[]::text[]",
        "ALTER TABLE t ADD COLUMN c varchar(20) DEFAULT 'x'::varchar(20)",
        "ALTER TABLE t ADD COLUMN c numeric(12,2) DEFAULT CAST(0 AS numeric(12,2))",
        "ALTER TABLE t ADD COLUMN c text DEFAULT lower('X')",
        "ALTER TABLE t ADD COLUMN c interval DEFAULT INTERVAL '1 day'",
    ];

    #[test]
    fn flags_volatile_and_unknown_defaults() {
        let mut ok = NON_VOLATILE_DEFAULTS.to_vec();
        ok.extend([
            "ALTER TABLE t ADD COLUMN c int",
            "ALTER TABLE t ADD COLUMN c bigserial",
            "ALTER TABLE t ALTER COLUMN c SET DEFAULT gen_random_uuid()",
            "ALTER TABLE t DROP COLUMN c",
            "CREATE TABLE t (id uuid DEFAULT gen_random_uuid())",
            "CREATE INDEX i ON t (x)",
        ]);
        table(
            &RULE,
            &Ctx::default(),
            &ok,
            &[
                "ALTER TABLE t ADD COLUMN c uuid DEFAULT gen_random_uuid()",
                "alter table s.t add c uuid not null default public.uuid_generate_v4()",
                "ALTER TABLE t ADD COLUMN c float8 DEFAULT random()",
                "ALTER TABLE t ADD COLUMN c timestamptz DEFAULT clock_timestamp()",
                "ALTER TABLE t ADD COLUMN c bigint DEFAULT nextval('s')",
                "ALTER TABLE t ADD COLUMN c int DEFAULT my_function()",
                "ALTER TABLE t ADD COLUMN c int GENERATED ALWAYS AS (a * 2) STORED",
                // only the second sub-command offends
                "ALTER TABLE t ADD COLUMN a int, ADD COLUMN b uuid DEFAULT gen_random_uuid()",
                "ALTER TABLE t ALTER COLUMN x SET NOT NULL, ADD COLUMN b uuid DEFAULT gen_random_uuid()",
            ],
        );
    }

    #[test]
    fn messages_name_the_column_and_the_function() {
        let f = run(
            &RULE,
            "ALTER TABLE users ADD COLUMN ext uuid DEFAULT gen_random_uuid()",
            &Ctx::default(),
        )
        .expect("flagged");
        assert!(
            f.message.contains("users")
                && f.message.contains("volatile function gen_random_uuid()"),
            "{}",
            f.message
        );
        assert!(
            f.hint.contains("SET DEFAULT gen_random_uuid()"),
            "{}",
            f.hint
        );
        assert_eq!(f.rewrite, None);
        let f = run(
            &RULE,
            "ALTER TABLE users ADD COLUMN n int DEFAULT my_fn()",
            &Ctx::default(),
        )
        .expect("flagged");
        assert!(
            f.message.contains("cannot prove non-volatile"),
            "{}",
            f.message
        );
        let f = run(
            &RULE,
            "ALTER TABLE users ADD COLUMN s int GENERATED ALWAYS AS (a * 2) STORED",
            &Ctx::default(),
        )
        .expect("flagged");
        assert!(
            f.message.contains("stored generated column s") && f.hint.contains("trigger"),
            "{}",
            f.message
        );
    }

    fn with_functions(functions: &[(&str, &[Volatility])], version: u32) -> Ctx {
        Ctx {
            catalog: Some(Facts {
                functions: functions
                    .iter()
                    .map(|(name, v)| FunctionFacts {
                        name: (*name).to_owned(),
                        volatility: v.to_vec(),
                    })
                    .collect(),
                ..facts(existing_table("users", 1_000_000, 1 << 30), vec![])
            }),
            ..Ctx::version(version)
        }
    }

    #[test]
    fn catalog_volatility_decides() {
        use Volatility::*;
        let ctx = with_functions(
            &[
                ("my_stable_fn", &[Stable]),
                ("my_immutable_fn", &[Immutable, Stable]),
                ("gen_random_uuid", &[Volatile]),
                ("overloaded", &[Stable, Volatile]),
                ("now", &[Stable]),
                ("lower", &[Immutable]),
                ("coalesce", &[]),
                ("nowhere", &[]),
            ],
            170_000,
        );
        // (statement, None = passes / Some(text the message must contain))
        let cases: &[(&str, Option<&str>)] = &[
            (
                "ALTER TABLE users ADD COLUMN c int DEFAULT my_stable_fn()",
                None,
            ),
            (
                "ALTER TABLE users ADD COLUMN c int DEFAULT app.my_immutable_fn(1)",
                None,
            ),
            (
                "ALTER TABLE users ADD COLUMN c timestamptz DEFAULT now()",
                None,
            ),
            // not a function in pg_proc: the built-in list knows it is syntax
            (
                "ALTER TABLE users ADD COLUMN c text DEFAULT coalesce(lower('A'), 'b')",
                None,
            ),
            (
                "ALTER TABLE users ADD COLUMN c uuid DEFAULT gen_random_uuid()",
                Some("volatile function gen_random_uuid() (pg_proc.provolatile = 'v')"),
            ),
            (
                "ALTER TABLE users ADD COLUMN c int DEFAULT overloaded(1)",
                Some("volatile function overloaded()"),
            ),
            (
                "ALTER TABLE users ADD COLUMN c int DEFAULT nowhere()",
                Some("calls nowhere(), which ddlgate cannot prove non-volatile"),
            ),
            // Not asked about: the built-in lists decide, as without a catalog.
            (
                "ALTER TABLE users ADD COLUMN c float8 DEFAULT random()",
                Some("volatile function random(), so"),
            ),
            (
                "ALTER TABLE users ADD COLUMN c int GENERATED ALWAYS AS (a) STORED",
                Some("stored generated column c"),
            ),
        ];
        for (sql, expected) in cases {
            let got = run(&RULE, sql, &ctx);
            match expected {
                None => assert_eq!(got, None, "{sql} must pass"),
                Some(text) => {
                    let f = got.unwrap_or_else(|| panic!("{sql} must be flagged"));
                    assert!(f.message.contains(text), "{sql}: {}", f.message);
                }
            }
        }
        // Before PostgreSQL 11 any default rewrites, whatever the catalog says.
        assert!(
            run(
                &RULE,
                "ALTER TABLE users ADD COLUMN c int DEFAULT my_stable_fn()",
                &with_functions(&[("my_stable_fn", &[Stable])], 100_000)
            )
            .is_some()
        );
        // Facts read for another table are not used.
        assert!(
            run(
                &RULE,
                "ALTER TABLE other ADD COLUMN c int DEFAULT my_stable_fn()",
                &ctx
            )
            .is_some()
        );
    }

    #[test]
    fn any_default_rewrites_before_pg_11() {
        table(
            &RULE,
            &Ctx::version(100_000),
            &["ALTER TABLE t ADD COLUMN c int"],
            NON_VOLATILE_DEFAULTS,
        );
        table(&RULE, &Ctx::version(110_000), NON_VOLATILE_DEFAULTS, &[]);
        let f = run(
            &RULE,
            "ALTER TABLE t ADD COLUMN c int DEFAULT 0",
            &Ctx::version(100_023),
        )
        .expect("flagged");
        assert!(f.message.contains("PostgreSQL 11"), "{}", f.message);
    }

    #[test]
    fn virtual_generated_columns_pass() {
        // sqlparser 0.64 rejects VIRTUAL; the token classifier builds this.
        let ddl = Ddl {
            kind: DdlKind::AlterTable {
                name: Name::bare("t"),
                only: false,
                if_exists: false,
                ops: vec![AlterOp::AddColumn(AddColumn {
                    name: "v".into(),
                    data_type: "int".into(),
                    not_null: false,
                    default: None,
                    serial: false,
                    identity: false,
                    generated_stored: false,
                    generated_virtual: true,
                    constraints: vec![],
                })],
            },
            understood: Understood::Fallback,
        };
        assert_eq!((RULE.check)(&ddl, &Ctx::default().get()), None);
    }

    #[test]
    fn tables_created_in_the_transaction_are_exempt() {
        let mut ctx = Ctx::in_tx();
        ctx.created.insert(Name::bare("fresh"));
        // The set holds names as the statement writes them (`crate::created`).
        ctx.created.insert(Name::new(Some("public"), "fresh"));
        assert_eq!(
            run(
                &RULE,
                "ALTER TABLE fresh ADD COLUMN c uuid DEFAULT gen_random_uuid()",
                &ctx
            ),
            None
        );
        assert_eq!(
            run(
                &RULE,
                "ALTER TABLE public.fresh ADD COLUMN c int GENERATED ALWAYS AS (a) STORED",
                &ctx
            ),
            None
        );
        assert!(
            run(
                &RULE,
                "ALTER TABLE other ADD COLUMN c uuid DEFAULT gen_random_uuid()",
                &ctx
            )
            .is_some()
        );
    }
}

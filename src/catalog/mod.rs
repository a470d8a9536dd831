//! Catalog facts about the objects a DDL statement touches, read from the live database.
//!
//! The rules are pure functions of a statement and its [`crate::rules::Context`]; the facts
//! here enter through `Context::catalog`. `None` means "not known" (offline `ddlgate check`, or
//! no catalog read for this statement): rules then assume the worst case, as a static linter
//! must. With the facts, the verdicts most linters get wrong become exact: a `varchar(20)` →
//! `varchar(50)` change that rewrites nothing, a DEFAULT calling a user function declared
//! STABLE, a `SET NOT NULL` already proven by a valid CHECK, an index build on a ten-row table,
//! a partitioned parent where `CONCURRENTLY` is rejected.
//!
//! The flow, for one statement:
//!
//! 1. [`facts_query`] turns the statement model into **one** read-only `SELECT` returning one
//!    row with one column: a JSON document (`json_build_object` / `json_agg`). `None` when no
//!    rule needs facts for the statement, so ordinary DDL costs no round trip.
//! 2. The session runs it on the client's own upstream connection, in the client's
//!    transaction (simple protocol, text result) — so it sees tables created earlier in that
//!    transaction, the client's `search_path` and `TimeZone`, exactly as the statement will.
//! 3. [`parse_facts`] turns the JSON into [`Facts`]; the session adds its [`Thresholds`].
//!
//! Why the query is safe to run there:
//!
//! - It only reads catalogs: no locks beyond ACCESS SHARE on catalogs, except
//!   `pg_total_relation_size`, which opens the table, its indexes and its TOAST table with
//!   ACCESS SHARE (held, like any lock, to the end of the client's transaction). That lock
//!   conflicts only with ACCESS EXCLUSIVE, and the size is only asked for when `pg_locks`
//!   shows no other session holding or awaiting ACCESS EXCLUSIVE on any of them (a plain
//!   `REINDEX` holds it on an index); otherwise the size is reported unknown and the table
//!   counts as large. A lock requested in the instant between that check and the measurement
//!   can still make the query wait; the session's timeouts bound that.
//! - It cannot fail on user input: names are resolved with `to_regclass` (missing objects give
//!   `exists: false`, never an error), every name is passed as a correctly quoted literal
//!   ([`quote::literal`](crate::sql::quote::literal) of a [`quote::ident`](crate::sql::quote::ident)-quoted qualified name), and names PostgreSQL
//!   could not hold (empty, NUL) are never sent. An error here would abort the client's
//!   transaction, so this matters more than elegance.
//! - It needs PostgreSQL 10 or later (`relkind 'p'`, `relispartition`) — every supported
//!   release. Its text is UTF-8: send it as is only when the session's `client_encoding` is
//!   UTF8 or the text is ASCII (`str::is_ascii`).
//!
//! The JSON document (every key always present; `null` where a fact does not apply):
//!
//! ```text
//! { "timezone": "UTC",
//!   "relation": null | { "asked_schema", "asked_name", "exists", "schema", "name", "relkind",
//!       "table_schema", "table_name",            -- an index's table
//!       "rows", "max_rows", "bytes",              -- the table (or whole partition tree)
//!       "populated", "refresh_index",             -- materialized views
//!       "partitions": [{ "schema", "name", "parent_schema", "parent_name", "relkind", "level" }] },
//!   "columns":   [{ "name", "exists", "type", "type_oid", "typmod", "not_null", "nullable", "collation",
//!                   "checks": [{ "name", "definition" }], "indexes": [{ "name", "plain" }] }],
//!   "functions": [{ "name", "volatility": ["i" | "s" | "v", …] }],
//!   "referenced": [{ "asked_schema", "asked_name", "exists", "schema", "name", "relkind",
//!                    "table_schema", "table_name",  -- an index's table (DROP INDEX a, b)
//!                    "rows", "max_rows", "bytes" }],
//!   "types":     [{ "asked", "oid", "citext" }],
//!   "drops":     [{ "asked_schema", "asked_name", "candidates", "anywhere",   -- DROP … CASCADE
//!                   "dependents", "escapes", "names": ["view v", …] }],
//!   "index":      null | { "asked", "exists", "on_table", "valid",          -- IF NOT EXISTS, USING INDEX
//!                   "columns": [{ "name", "not_null" }] },
//!   "constraint": null | { "asked", "exists", "validated", "contype",      -- VALIDATE CONSTRAINT
//!                   "own", "held_lock" } }
//! ```
//!
//! Layout: `types` holds the facts ([`Facts`], [`Relation`], …); `query` writes the one
//! `SELECT` ([`facts_query`]); `parse` decodes its JSON answer and the CHECK definitions in it
//! ([`parse_facts`], [`check_proves_not_null`]); `type_change` decides what `ALTER COLUMN …
//! TYPE` does to the data ([`type_change`]). Everything is re-exported here: callers use
//! `crate::catalog::X`.

pub mod estimate;
mod parse;
mod query;
#[cfg(test)]
pub(crate) mod testing;
mod type_change;
mod types;

pub use parse::{check_proves_not_null, parse_facts};
pub use query::{do_facts_query, facts_query};
pub use type_change::{
    TypeChange, column_type_is_as_named, is_binary_coercible, is_collatable, type_change,
    type_lookup_name, type_resolves_as_written,
};
pub use types::{
    BodyFacts, CatalogError, ColumnFacts, ColumnIndex, ColumnType, ConstraintFacts, DropFacts,
    Facts, FunctionFacts, IndexColumn, IndexFacts, Partition, PartitionOf, RelKind, Relation,
    Thresholds, TypeFacts, Volatility,
};

#[cfg(test)]
mod tests {
    use super::type_change::type_regtype_text;
    use super::*;
    use crate::sql::lexer::LexOptions;
    use crate::sql::parse;
    use crate::sql::statement::Ddl;
    fn ddl(sql: &str) -> Ddl {
        parse::understand(sql.as_bytes(), 0, sql.len(), LexOptions::default())
    }
    #[test]
    fn type_names_are_resolved_by_the_server() {
        assert_eq!(type_lookup_name("varchar(20)").as_deref(), Some("varchar"));
        assert_eq!(
            type_lookup_name("timestamp(3) with time zone").as_deref(),
            Some("timestamp with time zone")
        );
        assert_eq!(
            type_lookup_name("pg_catalog.text").as_deref(),
            Some("pg_catalog.text")
        );
        assert_eq!(type_lookup_name("s.text"), None);
        assert_eq!(type_lookup_name("float(20)").as_deref(), Some("float(20)"));
        assert_eq!(type_lookup_name("my_domain"), None);
        assert_eq!(type_regtype_text("select.citext"), "\"select\".citext");
        let q = facts_query(&ddl(
            "ALTER TABLE t ALTER COLUMN c TYPE varchar(50), ALTER COLUMN d TYPE character varying",
        ))
        .expect("query");
        assert!(
            q.contains("ROWS FROM (pg_catalog.unnest(ARRAY['varchar', 'character varying']::pg_catalog.text[]), pg_catalog.unnest(ARRAY['varchar', 'character varying']::pg_catalog.text[]))"),
            "{q}"
        );
        let facts = parse_facts(
            r#"{"timezone": "UTC", "relation": null, "columns": [], "functions": [], "referenced": [],
               "types": [{"asked": "text", "oid": 16500, "citext": false}, {"asked": "varchar", "oid": 1043, "citext": false}]}"#,
        )
        .expect("facts");
        assert!(!type_resolves_as_written(&facts, "text"));
        assert!(type_resolves_as_written(&facts, "varchar(50)"));
        assert!(!type_resolves_as_written(&facts, "int"));
        assert!(
            parse_facts(
                r#"{"timezone": null, "relation": null, "types": [{"asked": "x", "oid": -1}]}"#
            )
            .is_err()
        );
    }
}

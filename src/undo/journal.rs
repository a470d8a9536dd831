//! The SQL of the undo journal, `<schema>.journal` in the user's database (`[journal]`), and of
//! the fingerprint that tells `ddlgate undo` whether the object an entry changed has changed
//! again since. Every identifier and literal is quoted with `sql::quote`.
//!
//! The fingerprint of a relation is an md5 over what its DDL can change and its inverse puts
//! back: its schema-qualified name, its live columns (name, type, NOT NULL, default), its
//! constraints (name and kind — not validity, which a recipe's VALIDATE step changes) and its
//! indexes' names. It is taken in the same query that records the entry (right after the
//! statement, in its transaction), and again by `ddlgate undo` before it applies the inverse.

use crate::sql::quote;

/// The SQL expression fingerprinting relation `oid` (an `oid`-typed SQL expression); NULL when
/// `oid` is NULL.
pub fn fingerprint_sql(oid: &str) -> String {
    format!(
        "(SELECT CASE WHEN x.o IS NULL THEN NULL ELSE md5(concat_ws('|', \
         (SELECT n.nspname || '.' || c.relname FROM pg_catalog.pg_class c \
           JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = x.o), \
         (SELECT string_agg(a.attname || ':' || pg_catalog.format_type(a.atttypid, a.atttypmod) || ':' \
           || a.attnotnull || ':' || coalesce(pg_catalog.pg_get_expr(d.adbin, d.adrelid), ''), ',' ORDER BY a.attnum) \
           FROM pg_catalog.pg_attribute a LEFT JOIN pg_catalog.pg_attrdef d \
           ON d.adrelid = a.attrelid AND d.adnum = a.attnum \
           WHERE a.attrelid = x.o AND a.attnum > 0 AND NOT a.attisdropped), \
         (SELECT string_agg(conname || ':' || contype::text, ',' ORDER BY conname) \
           FROM pg_catalog.pg_constraint WHERE conrelid = x.o), \
         (SELECT string_agg(c.relname, ',' ORDER BY c.relname) FROM pg_catalog.pg_index i \
           JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = x.o))) END \
         FROM (SELECT ({oid})::oid AS o) x)"
    )
}

/// Creates the journal's schema and table when the table is missing: a `DO` block, so that a
/// role that may write into an existing journal but not create schemas needs no more than that.
/// (`journal.schema` holds no `$`, see `Config::validate`.)
pub fn create_sql(schema: &str) -> String {
    let s = quote::ident(schema);
    format!(
        "DO $ddlgate_journal$ BEGIN IF to_regclass({}) IS NULL THEN {} END IF; END $ddlgate_journal$",
        quote::literal(&format!("{s}.journal")),
        create_statements(&s)
    )
}

fn create_statements(s: &str) -> String {
    format!(
        "CREATE SCHEMA IF NOT EXISTS {s}; \
         CREATE TABLE IF NOT EXISTS {s}.journal (\
         id bigserial PRIMARY KEY, \
         at timestamptz NOT NULL DEFAULT now(), \
         username text NOT NULL, \
         application_name text NOT NULL, \
         client_addr text NOT NULL, \
         database text NOT NULL DEFAULT current_database(), \
         statement text NOT NULL, \
         ran text NOT NULL, \
         inverse text[], \
         irreversible text, \
         object_oid oid, \
         fingerprint text, \
         batch text, \
         undone_at timestamptz, \
         undone_by text);"
    )
}

/// One journal entry to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub user: String,
    pub application_name: String,
    pub client_addr: String,
    /// The statement as the client sent it (password literals masked).
    pub statement: String,
    /// What ran: the statement, its rewrite, or the recipe's steps.
    pub ran: String,
    /// The inverse's statements, or why there is none.
    pub inverse: Result<Vec<String>, String>,
    /// The relation the fingerprint is taken of, as a SQL expression (an OID the snapshot
    /// read, or `to_regclass` of a created table), if any.
    pub object: Option<String>,
}

fn text_array(items: &[String]) -> String {
    if items.is_empty() {
        return "ARRAY[]::text[]".to_owned();
    }
    format!(
        "ARRAY[{}]::text[]",
        items
            .iter()
            .map(|s| quote::literal(s))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// Records `entries` (one INSERT); `None` when there are none. `batch` marks the entries of
/// one message: they are written after all of its statements ran, so their fingerprints are
/// all of the state after the last one (`ddlgate undo` checks the batch once, at its newest).
pub fn insert_sql(schema: &str, entries: &[Entry], batch: &str) -> Option<String> {
    if entries.is_empty() {
        return None;
    }
    let rows: Vec<String> = entries
        .iter()
        .map(|e| {
            let (inverse, irreversible) = match &e.inverse {
                Ok(sql) => (text_array(sql), "NULL".to_owned()),
                Err(why) => ("NULL".to_owned(), quote::literal(why)),
            };
            let object = e.object.clone().unwrap_or_else(|| "NULL".to_owned());
            format!(
                "({}, {}, {}, {}, {}, {inverse}, {irreversible}, ({object})::oid, {}, {})",
                quote::literal(&e.user),
                quote::literal(&e.application_name),
                quote::literal(&e.client_addr),
                quote::literal(&e.statement),
                quote::literal(&e.ran),
                fingerprint_sql(&object),
                quote::literal(batch)
            )
        })
        .collect();
    Some(format!(
        "INSERT INTO {}.journal (username, application_name, client_addr, statement, ran, inverse, irreversible, object_oid, fingerprint, batch) VALUES {}",
        quote::ident(schema),
        rows.join(", ")
    ))
}

/// The savepoint a journal write inside the client's transaction runs under, so that its
/// failure cannot abort that transaction.
pub const SAVEPOINT: &str = "ddlgate_journal";

/// `statements` inside the client's transaction: under a savepoint, released at once; one
/// statement an item, as ddlgate's own queries run them (one prepared statement each).
pub fn in_savepoint(statements: Vec<String>) -> Vec<String> {
    let mut all = Vec::with_capacity(statements.len() + 2);
    all.push(format!("SAVEPOINT {SAVEPOINT}"));
    all.extend(statements);
    all.push(format!("RELEASE SAVEPOINT {SAVEPOINT}"));
    all
}

/// After a failed [`in_savepoint`]: the transaction as it was before it (two statements).
pub fn rollback_savepoint() -> [String; 2] {
    [
        format!("ROLLBACK TO SAVEPOINT {SAVEPOINT}"),
        format!("RELEASE SAVEPOINT {SAVEPOINT}"),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_quotes_everything() {
        let e = Entry {
            user: "o'brien".into(),
            application_name: "app".into(),
            client_addr: "127.0.0.1:5".into(),
            statement: "ALTER TABLE t ADD COLUMN a int".into(),
            ran: "ALTER TABLE t ADD COLUMN a int".into(),
            inverse: Ok(vec![r#"ALTER TABLE "public"."t" DROP COLUMN "a""#.into()]),
            object: Some("16384".into()),
        };
        let sql = insert_sql("dd\"g", &[e], "b1").unwrap();
        assert!(sql.starts_with(r#"INSERT INTO "dd""g".journal"#), "{sql}");
        assert!(sql.contains("'o''brien'"));
        assert!(sql.contains(r#"ARRAY['ALTER TABLE "public"."t" DROP COLUMN "a"']::text[]"#));
        assert_eq!(insert_sql("ddlgate", &[], "b1"), None);
    }
}

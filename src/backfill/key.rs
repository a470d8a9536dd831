//! The table a backfill updates and the key its batches walk, both from the server: the name
//! is resolved by `regclass` (search_path, schema-qualified and quoted names exactly as SQL
//! reads them) to an OID, and every later statement names the table by the schema and name the
//! catalog gives for that OID.
//!
//! The key: the primary key; without one, the unique index with the fewest columns (then by
//! name) that is valid, has no expressions and no predicate, and whose key columns are all
//! NOT NULL — the same guarantees a primary key gives (every row has exactly one position in
//! key order). A table with neither cannot be walked in batches without skipping or repeating
//! rows, and is refused.

use tokio_postgres::Client;

use super::{Error, describe};
use crate::sql::quote;

/// A table resolved by the server.
#[derive(Clone, Debug)]
pub struct TableRef {
    pub oid: u32,
    pub schema: String,
    pub name: String,
    /// `schema.name`, quoted as needed, for messages.
    pub display: String,
    /// A partitioned table (`relkind = 'p'`): updated as a whole; a plain table is updated
    /// with `ONLY`, so inheritance children (whose keys are not unique with the parent's) are
    /// left alone.
    pub partitioned: bool,
}

impl TableRef {
    /// The UPDATE/SELECT target: `ONLY "schema"."name"` or `"schema"."name"`.
    pub fn target(&self) -> String {
        let q = format!(
            "{}.{}",
            quote::ident(&self.schema),
            quote::ident(&self.name)
        );
        if self.partitioned {
            q
        } else {
            format!("ONLY {q}")
        }
    }
}

/// The columns batches are ordered and compared by.
#[derive(Clone, Debug)]
pub struct Key {
    /// The index it comes from, for messages.
    pub index: String,
    pub primary: bool,
    pub columns: Vec<String>,
    /// Each column's type as `format_type` writes it (no typmod): key values are kept as text
    /// and cast back with it.
    pub types: Vec<String>,
}

impl Key {
    pub fn describe(&self) -> String {
        let cols: Vec<String> = self
            .columns
            .iter()
            .map(|c| quote::ident_if_needed(c))
            .collect();
        format!(
            "{} {} ({})",
            if self.primary {
                "primary key"
            } else {
                "unique index"
            },
            self.index,
            cols.join(", ")
        )
    }
}

/// Resolves `name` as SQL would (the session's search_path for an unqualified name).
pub async fn resolve(client: &Client, name: &str) -> Result<TableRef, Error> {
    let row = client
        .query_one(
            "SELECT c.oid, n.nspname::text, c.relname::text, c.relkind::text
               FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE c.oid = $1::text::regclass",
            &[&name],
        )
        .await
        .map_err(|e| Error::Server(format!("--table {name}: {}", describe(&e))))?;
    let kind: String = row.get(3);
    let schema: String = row.get(1);
    let rel: String = row.get(2);
    let display = format!(
        "{}.{}",
        quote::ident_if_needed(&schema),
        quote::ident_if_needed(&rel)
    );
    if kind != "r" && kind != "p" {
        return Err(Error::Usage(format!(
            "--table {name}: {display} is not a table (relkind {kind})"
        )));
    }
    Ok(TableRef {
        oid: row.get(0),
        schema,
        name: rel,
        display,
        partitioned: kind == "p",
    })
}

/// The key the batches walk, or [`Error::NoKey`].
pub async fn walking_key(client: &Client, table: &TableRef) -> Result<Key, Error> {
    let rows = client
        .query(
            "SELECT i.indexrelid::regclass::text, i.indisprimary,
                    array_agg(a.attname::text ORDER BY k.ord),
                    array_agg(format_type(a.atttypid, NULL) ORDER BY k.ord)
               FROM pg_index i
              CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
               LEFT JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
              WHERE i.indrelid = $1 AND i.indisunique AND i.indisvalid AND i.indisready
                AND i.indislive AND i.indpred IS NULL AND i.indexprs IS NULL
                AND k.ord <= i.indnkeyatts
              GROUP BY i.indexrelid, i.indisprimary
             HAVING bool_and(COALESCE(a.attnotnull, false))
              ORDER BY i.indisprimary DESC, count(*), 1
              LIMIT 1",
            &[&table.oid],
        )
        .await
        .map_err(|e| {
            Error::Server(format!(
                "reading the keys of {}: {}",
                table.display,
                describe(&e)
            ))
        })?;
    let Some(row) = rows.first() else {
        return Err(Error::NoKey(format!(
            "{} has no primary key and no unique index over NOT NULL columns (without expressions \
             or a predicate): a backfill walks the table in key order and cannot batch it \
             without skipping or repeating rows. Nothing was changed.\nHINT: add a primary key \
             first (CREATE UNIQUE INDEX CONCURRENTLY, then ALTER TABLE … ADD PRIMARY KEY USING \
             INDEX), then rerun",
            table.display
        )));
    };
    Ok(Key {
        index: row.get(0),
        primary: row.get(1),
        columns: row.get(2),
        types: row.get(3),
    })
}

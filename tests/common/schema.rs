//! The catalog facts the "same end state" comparisons read: what a statement run through
//! ddlgate (as written, rewritten or as recipe steps) must leave exactly as the direct statement
//! does on a twin database.

use std::process::Command;
use std::time::Duration;

use tokio_postgres::Client;

use super::pg;

/// Database `db` on the test cluster at `port` as `pg_dump --schema-only --no-owner
/// --no-privileges` prints it (plus `extra` arguments), without comments, blank lines, SET
/// lines and psql meta-commands, so that two dumps compare line by line.
pub async fn schema_only_dump(port: u16, db: &str, extra: &[&str]) -> String {
    let mut cmd = Command::new(super::PgCluster::bindir().join("pg_dump"));
    pg::strip_pg_env(&mut cmd);
    cmd.args(["--schema-only", "--no-owner", "--no-privileges"]);
    cmd.args(extra);
    cmd.args([
        "-h",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-U",
        pg::ADMIN_USER,
        "-d",
        db,
    ]);
    let out = tokio::task::spawn_blocking(move || {
        pg::run(&mut cmd, None, Duration::from_secs(60)).expect("spawn pg_dump")
    })
    .await
    .expect("pg_dump thread");
    assert!(out.status.success(), "pg_dump: {}", pg::output_text(&out));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| {
            !(l.is_empty()
                || l.starts_with("--")
                || l.starts_with("SET ")
                || l.starts_with("SELECT pg_catalog.set_config")
                || l.starts_with('\\'))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every user relation's kind, columns (type, NOT NULL, default), constraints (definition,
/// validated, inherited from a parent), indexes (definition, valid, ready), partition links
/// (tables and indexes, with a pending detach) and the triggers behind constraints, one line
/// per fact, sorted. Nothing carries an OID, so two databases compare line by line.
pub async fn catalog_dump(client: &Client) -> Vec<String> {
    let sql = "
      WITH rel AS (
        SELECT c.oid, n.nspname, c.relname FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'
      )
      SELECT format('%s.%s kind %s partition=%s', r.nspname, r.relname, c.relkind, c.relispartition)
        FROM rel r JOIN pg_class c ON c.oid = r.oid WHERE c.relkind IN ('r', 'p', 'm')
      UNION ALL
      SELECT format('%s.%s column %s %s notnull=%s default=%s', r.nspname, r.relname, a.attname,
                    format_type(a.atttypid, a.atttypmod), a.attnotnull, pg_get_expr(d.adbin, d.adrelid))
        FROM rel r JOIN pg_class c ON c.oid = r.oid
        JOIN pg_attribute a ON a.attrelid = r.oid
        LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
       WHERE c.relkind IN ('r', 'p', 'm') AND a.attnum > 0 AND NOT a.attisdropped
      UNION ALL
      SELECT format('%s.%s constraint %s type=%s validated=%s %s inherited=%s', r.nspname, r.relname,
                    co.conname, co.contype, co.convalidated, pg_get_constraintdef(co.oid), co.conparentid <> 0)
        FROM pg_constraint co JOIN rel r ON r.oid = co.conrelid
      UNION ALL
      SELECT format('%s.%s index %s valid=%s ready=%s %s', r.nspname, r.relname, ic.relname,
                    i.indisvalid, i.indisready, pg_get_indexdef(i.indexrelid))
        FROM pg_index i JOIN rel r ON r.oid = i.indrelid JOIN pg_class ic ON ic.oid = i.indexrelid
      UNION ALL
      SELECT format('%s %s is a partition of %s pending=%s',
                    CASE WHEN ci.relkind IN ('i', 'I') THEN 'index' ELSE 'table' END, ci.relname,
                    pi.relname, coalesce(to_jsonb(h) ->> 'inhdetachpending', 'false'))
        FROM pg_inherits h JOIN pg_class ci ON ci.oid = h.inhrelid JOIN pg_class pi ON pi.oid = h.inhparent
      UNION ALL
      SELECT format('trigger on %s for constraint %s', t.tgrelid::regclass, co.conname)
        FROM pg_trigger t JOIN pg_constraint co ON co.oid = t.tgconstraint
      ORDER BY 1";
    client
        .query(sql, &[])
        .await
        .expect("catalog dump")
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect()
}

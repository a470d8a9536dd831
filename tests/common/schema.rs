//! The catalog facts the "same end state" comparisons read: what a statement run through
//! ddlgate (as written, rewritten or as recipe steps) must leave exactly as the direct statement
//! does on a twin database.

use tokio_postgres::Client;

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

//! The text of the one read-only `SELECT` that asks the server for a statement's facts
//! ([`facts_query`]), and the quoting that keeps it from failing on any name. See the module
//! docs of `catalog` for why it is safe to run in the client's transaction.

use super::type_change::{type_lookup_name, type_regtype_text};
use crate::sql::quote;
use crate::sql::statement::{
    AddConstraint, AlterOp, ConstraintKind, Ddl, DdlKind, DropObject, Name, ReindexTarget,
};

/// A name PostgreSQL could store: not empty, no NUL (the simple protocol ends the query text
/// at a NUL, and `""` is a syntax error inside `to_regclass`).
fn storable(part: &str) -> bool {
    !part.is_empty() && !part.contains('\0')
}

/// `to_regclass('"schema"."name"')::oid`, or a NULL oid for a name no relation can have.
fn regclass_expr(name: &Name) -> String {
    let schema_ok = name.schema.as_deref().is_none_or(storable);
    if !schema_ok || !storable(&name.name) {
        return "NULL::pg_catalog.oid".to_owned();
    }
    let qualified = match &name.schema {
        Some(s) => format!("{}.{}", quote::ident(s), quote::ident(&name.name)),
        None => quote::ident(&name.name),
    };
    format!(
        "pg_catalog.to_regclass({}::pg_catalog.text)::pg_catalog.oid",
        quote::literal(&qualified)
    )
}

/// A text literal, or `NULL::text` for a value that cannot be sent.
fn text_literal(s: Option<&str>) -> String {
    match s {
        Some(s) if !s.contains('\0') => format!("{}::pg_catalog.text", quote::literal(s)),
        _ => "NULL::pg_catalog.text".to_owned(),
    }
}

/// `ARRAY[…]::text[]` of the storable names.
fn text_array(items: &[&str]) -> String {
    let items: Vec<String> = items
        .iter()
        .filter(|s| storable(s))
        .map(|s| quote::literal(s))
        .collect();
    format!("ARRAY[{}]::pg_catalog.text[]", items.join(", "))
}

// ---------------------------------------------------------------------------------------------
// The query
// ---------------------------------------------------------------------------------------------

/// What one statement needs to know.
#[derive(Debug, Default)]
struct Request<'a> {
    relation: Option<&'a Name>,
    columns: Vec<&'a str>,
    functions: Vec<&'a str>,
    referenced: Vec<&'a Name>,
    /// Type names to resolve ([`type_lookup_name`] of each `ALTER COLUMN … TYPE`).
    types: Vec<String>,
    /// The objects of a `DROP <kind> … CASCADE` and the catalog they live in.
    drops: Option<(DropCatalog, &'a [DropObject])>,
    /// An index named by the statement, in its table's schema (`IF NOT EXISTS`, `USING INDEX`).
    index: Option<&'a str>,
    /// The constraint of a `VALIDATE CONSTRAINT`.
    constraint: Option<&'a str>,
}

/// The catalog a dropped object's name is looked up in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DropCatalog {
    Proc,
    Type,
    Namespace,
    Extension,
    /// Relations of these `relkind`s (an SQL list): views, materialized views, sequences.
    Relation(&'static str),
}

fn push_unique<'a, T: PartialEq + ?Sized>(v: &mut Vec<&'a T>, item: &'a T) {
    if !v.contains(&item) {
        v.push(item);
    }
}

/// The facts the rules can use for `ddl`, or `None` when no rule would look at any.
fn request(ddl: &Ddl) -> Option<Request<'_>> {
    let mut req = Request::default();
    match &ddl.kind {
        // `ON ONLY` too: only a partitioned table (relkind 'p') makes it build nothing.
        DdlKind::CreateIndex {
            table,
            if_not_exists,
            name,
            ..
        } => {
            // `IF NOT EXISTS name`: an INVALID leftover of that name would be "found" and kept.
            req.index = name
                .as_ref()
                .filter(|_| *if_not_exists)
                .map(|n| n.name.as_str());
            // CONCURRENTLY too: PostgreSQL refuses it on a partitioned table, which then gets
            // the step-wise build.
            req.relation = Some(table);
        }
        // ALTER INDEX … RENAME renames a table too: the relkind decides. For a view's column
        // rename it tells a view from a table in the message.
        DdlKind::AlterIndex { name, action } if action == "RENAME" => req.relation = Some(name),
        DdlKind::RenameView {
            name,
            column: Some(_),
            ..
        } => req.relation = Some(name),
        // Every index named: the first as the relation, the others as referenced relations
        // (each with its own table's size), so that a DROP INDEX of several indexes is
        // decided on every one of them.
        // CONCURRENTLY too: PostgreSQL refuses it on a partitioned index (relkind 'I'), which
        // is then dropped plainly under the guard.
        DdlKind::DropIndex { names, .. } => {
            let (first, rest) = names.split_first()?;
            req.relation = Some(first);
            for n in rest {
                push_unique(&mut req.referenced, n);
            }
        }
        DdlKind::Reindex {
            target: ReindexTarget::Index | ReindexTarget::Table,
            name: Some(name),
            concurrently: false,
        } => req.relation = Some(name),
        DdlKind::RefreshMaterializedView {
            name,
            concurrently: false,
        } => req.relation = Some(name),
        // The small-table allowance of VACUUM FULL / CLUSTER: one named table only (a list or
        // the whole database is never "one small table").
        DdlKind::Vacuum { full: true, tables } if tables.len() == 1 => {
            req.relation = tables.first();
        }
        DdlKind::Cluster { table: Some(t) } => req.relation = Some(t),
        // Whether each table is a partition (DROP TABLE of one locks its parent: it is
        // detached concurrently first), as for DROP INDEX: the first as the relation.
        DdlKind::DropTable { names, .. } => {
            let (first, rest) = names.split_first()?;
            req.relation = Some(first);
            for n in rest {
                push_unique(&mut req.referenced, n);
            }
        }
        DdlKind::DropCascade {
            tag,
            objects: Some(objects),
            ..
        } => {
            let catalog = match tag.as_str() {
                "DROP FUNCTION" | "DROP PROCEDURE" | "DROP ROUTINE" | "DROP AGGREGATE" => {
                    DropCatalog::Proc
                }
                "DROP TYPE" | "DROP DOMAIN" => DropCatalog::Type,
                "DROP SCHEMA" => DropCatalog::Namespace,
                "DROP EXTENSION" => DropCatalog::Extension,
                "DROP VIEW" => DropCatalog::Relation("('v')"),
                "DROP MATERIALIZED VIEW" => DropCatalog::Relation("('m')"),
                "DROP SEQUENCE" => DropCatalog::Relation("('S')"),
                _ => return None,
            };
            req.drops = Some((catalog, objects));
        }
        DdlKind::AlterTable { name, ops, .. } => {
            // Actions whose lock lasts as long as a scan or rewrite of the table: their rules
            // allow them on a table the catalog shows small, so its size is read.
            let mut sized = false;
            for op in ops {
                match op {
                    AlterOp::AddColumn(_) | AlterOp::AddConstraint(_) => sized = true,
                    AlterOp::ValidateConstraint { name } => {
                        sized = true;
                        req.constraint.get_or_insert(name.as_str());
                    }
                    AlterOp::AttachPartition { partition } => {
                        sized = true;
                        push_unique(&mut req.referenced, partition);
                    }
                    _ => {}
                }
                match op {
                    AlterOp::AlterColumnType {
                        column, data_type, ..
                    } => {
                        push_unique(&mut req.columns, column.as_str());
                        if let Some(t) = type_lookup_name(data_type)
                            && !req.types.contains(&t)
                        {
                            req.types.push(t);
                        }
                    }
                    AlterOp::SetNotNull { column }
                    | AlterOp::DropNotNull { column }
                    | AlterOp::DropDefault { column } => {
                        push_unique(&mut req.columns, column.as_str());
                    }
                    AlterOp::AddColumn(c) => {
                        for f in c.default.iter().flat_map(|d| &d.functions) {
                            push_unique(&mut req.functions, f.as_str());
                        }
                        for k in &c.constraints {
                            if let ConstraintKind::ForeignKey { references } = k {
                                push_unique(&mut req.referenced, references);
                            }
                        }
                    }
                    AlterOp::AddConstraint(AddConstraint {
                        kind: ConstraintKind::ForeignKey { references },
                        ..
                    }) => push_unique(&mut req.referenced, references),
                    AlterOp::AddConstraint(AddConstraint {
                        index: Some(index), ..
                    }) => {
                        req.index.get_or_insert(index.as_str());
                    }
                    _ => {}
                }
            }
            if !sized
                && req.columns.is_empty()
                && req.functions.is_empty()
                && req.referenced.is_empty()
            {
                return None;
            }
            req.relation = Some(name);
        }
        _ => return None,
    }
    Some(req)
}

/// The one read for a `DO` block (`rules::body::facts_plan`): the facts of each of its body's
/// statements that may be decided with them — `(start, end, facts_query)`, the span in the
/// body — and whether its conditions provably read only the system catalogs (`plain`):
///
/// - the first schema of the effective search path, the session's temp schema aside, is
///   `pg_catalog`: functions and operators in the conditions resolve there first, and tables
///   named without a schema are looked up there before any user schema;
/// - each table `catalog_names` lists (the unqualified names the conditions read) resolves to
///   a relation of `pg_catalog` (OID 11), not to a temp table or a user's relation of the same
///   name.
///
/// The answer is `{ "plain": bool, "body": [{ "start", "end", "facts": <facts_query's document> }] }`;
/// without `plain` no body fact is used (`parse_facts`). Every name is a quoted literal, as in
/// [`facts_query`]: the read cannot fail on the block's text.
pub fn do_facts_query(
    conditions: bool,
    catalog_names: &[String],
    statements: &[(usize, usize, String)],
) -> String {
    // Schema names are compared as names, never cast (`regnamespace` of a name that needs
    // quoting would fail, and abort the client's transaction).
    const FIRST_SCHEMA: &str = "COALESCE((SELECT u.s OPERATOR(pg_catalog.=) 'pg_catalog' \
FROM pg_catalog.unnest(pg_catalog.current_schemas(true)) WITH ORDINALITY AS u(s, n) \
WHERE u.s IS DISTINCT FROM (SELECT t.nspname FROM pg_catalog.pg_namespace t \
WHERE t.oid OPERATOR(pg_catalog.=) pg_catalog.pg_my_temp_schema()) \
ORDER BY u.n LIMIT 1), false)";
    const NO_USER_OPERATORS: &str = "NOT EXISTS (SELECT 1 FROM pg_catalog.pg_operator o \
JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) o.oprnamespace \
WHERE n.oid OPERATOR(pg_catalog.<>) 11 \
AND n.nspname OPERATOR(pg_catalog.=) ANY (pg_catalog.current_schemas(true)))";
    let plain = if conditions {
        let mut parts = vec![FIRST_SCHEMA.to_owned(), NO_USER_OPERATORS.to_owned()];
        parts.extend(catalog_names.iter().map(|name| {
            let expr = if storable(name) {
                regclass_expr(&Name::bare(name))
            } else {
                "NULL::pg_catalog.oid".to_owned()
            };
            format!(
                "COALESCE((SELECT c.relnamespace OPERATOR(pg_catalog.=) 11 \
FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) {expr}), false)"
            )
        }));
        parts.join(" AND ")
    } else {
        "true".to_owned()
    };
    let body: Vec<String> = statements
        .iter()
        .map(|(start, end, query)| {
            format!(
                "pg_catalog.json_build_object('start', {start}, 'end', {end}, 'facts', ({query}))"
            )
        })
        .collect();
    format!(
        "/* ddlgate catalog facts (DO) */ SELECT pg_catalog.json_build_object('plain', {plain}, \
'body', pg_catalog.json_build_array({}))",
        body.join(", ")
    )
}

/// The one `SELECT` that reads every fact the rules need for `ddl`, or `None` when the
/// statement needs none. See the module docs for the JSON it returns and why it is safe to
/// run inside the client's transaction.
pub fn facts_query(ddl: &Ddl) -> Option<String> {
    let req = request(ddl)?;
    let target = req
        .relation
        .map_or_else(|| "NULL::pg_catalog.oid".to_owned(), regclass_expr);
    let relation = req
        .relation
        .map_or_else(|| "NULL::pg_catalog.json".to_owned(), relation_json);
    let columns = columns_json(&req.columns);
    let functions = functions_json(&req.functions);
    let referenced: Vec<String> = req.referenced.iter().map(|n| referenced_json(n)).collect();
    let dropped = req
        .drops
        .and_then(|(catalog, objects)| dropped_ctes(catalog, objects));
    let drops = req
        .drops
        .map(|(catalog, objects)| {
            objects
                .iter()
                .filter_map(|o| drop_json(catalog, o, dropped.is_some()))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    Some(format!(
        "/* ddlgate catalog facts */ WITH RECURSIVE {dropped}\
target AS (SELECT {target} AS oid), \
heap AS (SELECT coalesce((SELECT x.indrelid FROM pg_catalog.pg_index x WHERE x.indexrelid = target.oid), target.oid) AS oid FROM target), \
tree(relid, parent, level) AS (\
SELECT heap.oid, 0::pg_catalog.oid, 0 FROM heap WHERE heap.oid IS NOT NULL \
UNION ALL \
SELECT i.inhrelid, i.inhparent, tree.level + 1 FROM tree \
JOIN pg_catalog.pg_inherits i ON i.inhparent = tree.relid \
JOIN pg_catalog.pg_class k ON k.oid = i.inhrelid WHERE k.relispartition), \
measured(relid) AS (\
SELECT tree.relid FROM tree \
UNION SELECT x.indexrelid FROM tree JOIN pg_catalog.pg_index x ON x.indrelid = tree.relid \
UNION SELECT k.reltoastrelid FROM tree JOIN pg_catalog.pg_class k ON k.oid = tree.relid \
UNION SELECT x.indexrelid FROM tree JOIN pg_catalog.pg_class k ON k.oid = tree.relid \
JOIN pg_catalog.pg_index x ON x.indrelid = k.reltoastrelid) \
SELECT pg_catalog.json_build_object(\
'timezone', pg_catalog.current_setting('TimeZone'), \
'relation', {relation}, \
'columns', {columns}, \
'functions', {functions}, \
'referenced', pg_catalog.json_build_array({referenced}), \
'types', {types}, \
'drops', pg_catalog.json_build_array({drops}), \
'index', {index}, \
'constraint', {constraint})",
        index = req
            .index
            .map_or_else(|| "NULL::pg_catalog.json".to_owned(), index_json),
        constraint = req
            .constraint
            .map_or_else(|| "NULL::pg_catalog.json".to_owned(), constraint_json),
        referenced = referenced.join(", "),
        types = types_json(&req.types),
        dropped = dropped.unwrap_or_default(),
    ))
}

/// `'name'::name`.
fn name_literal(name: &str) -> String {
    format!("{}::pg_catalog.name", quote::literal(name))
}

/// The index `name` in the schema of the statement's table (`target`): whether it is there,
/// on that table, valid, and its key columns with their validated NOT NULL.
fn index_json(name: &str) -> String {
    // PostgreSQL truncates identifiers to 63 bytes: ask for the name it stored.
    let name = &crate::sql::naming::truncate(name);
    if !storable(name) {
        return "NULL::pg_catalog.json".to_owned();
    }
    format!(
        "(SELECT pg_catalog.json_build_object(\
'asked', {asked}, 'exists', ic.oid IS NOT NULL, \
'on_table', coalesce(x.indrelid = target.oid, false), \
'valid', coalesce(x.indisvalid, false), \
'columns', (SELECT coalesce(pg_catalog.json_agg(pg_catalog.json_build_object(\
'name', a.attname, 'not_null', coalesce(a.attnotnull AND NOT EXISTS (\
SELECT 1 FROM pg_catalog.pg_constraint nn WHERE nn.conrelid = a.attrelid AND nn.contype = 'n' \
AND nn.conkey = ARRAY[a.attnum] AND NOT nn.convalidated), false)) ORDER BY k.ord), '[]'::pg_catalog.json) \
FROM pg_catalog.unnest(x.indkey::pg_catalog.int2[]) WITH ORDINALITY AS k(attnum, ord) \
LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.attnum AND k.attnum > 0 \
WHERE k.ord <= x.indnkeyatts)) \
FROM target LEFT JOIN pg_catalog.pg_class tc ON tc.oid = target.oid \
LEFT JOIN pg_catalog.pg_class ic ON ic.relnamespace = tc.relnamespace AND ic.relname = {named} \
LEFT JOIN pg_catalog.pg_index x ON x.indexrelid = ic.oid)",
        asked = text_literal(Some(name)),
        named = name_literal(name),
    )
}

/// The constraint `name` on the statement's table (`target`): validated or not, and whether
/// the client's transaction wrote its row (see `crate::created` for the xids) or already holds
/// a lock on the table that a validation would keep for its whole scan.
fn constraint_json(name: &str) -> String {
    let name = &crate::sql::naming::truncate(name);
    if !storable(name) {
        return "NULL::pg_catalog.json".to_owned();
    }
    format!(
        "(SELECT pg_catalog.json_build_object(\
'asked', {asked}, 'exists', co.oid IS NOT NULL, \
'validated', coalesce(co.convalidated, false), 'contype', co.contype::pg_catalog.text, \
'own', coalesce(EXISTS (SELECT 1 FROM pg_catalog.pg_locks l WHERE l.locktype = 'transactionid' \
AND l.mode = 'ExclusiveLock' AND l.granted AND l.pid = pg_catalog.pg_backend_pid() \
AND l.transactionid = co.xmin), false), \
'held_lock', (SELECT l.mode FROM pg_catalog.pg_locks l WHERE l.locktype = 'relation' \
AND l.relation = target.oid AND l.granted AND l.pid = pg_catalog.pg_backend_pid() \
AND l.mode IN ('AccessExclusiveLock', 'ExclusiveLock', 'ShareRowExclusiveLock') \
ORDER BY CASE l.mode WHEN 'AccessExclusiveLock' THEN 0 WHEN 'ExclusiveLock' THEN 1 ELSE 2 END LIMIT 1)) \
FROM target LEFT JOIN pg_catalog.pg_constraint co ON co.conrelid = target.oid AND co.conname = {named})",
        asked = text_literal(Some(name)),
        named = name_literal(name),
    )
}

/// Each type name resolved with the session's search_path, and whether it is citext's type.
/// Only names [`type_lookup_name`] produced are sent: words from ddlgate's own list of
/// built-in spellings and a quoted schema, which `to_regtype` cannot fail to parse (before
/// PostgreSQL 16 it raises on a syntax error, which would abort the client's transaction).
fn types_json(types: &[String]) -> String {
    if types.is_empty() {
        return "'[]'::pg_catalog.json".to_owned();
    }
    let resolvable: Vec<String> = types.iter().map(|t| type_regtype_text(t)).collect();
    let asked: Vec<&str> = types.iter().map(String::as_str).collect();
    let resolvable: Vec<&str> = resolvable.iter().map(String::as_str).collect();
    format!(
        "(SELECT coalesce(pg_catalog.json_agg(pg_catalog.json_build_object(\
'asked', q.asked, 'oid', t.oid::pg_catalog.int8, \
'citext', t.oid IS NOT NULL AND EXISTS (SELECT 1 FROM pg_catalog.pg_depend d \
JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid \
WHERE d.classid = 'pg_catalog.pg_type'::pg_catalog.regclass AND d.objid = t.oid \
AND d.refclassid = 'pg_catalog.pg_extension'::pg_catalog.regclass AND d.deptype = 'e' \
AND e.extname = 'citext')) ORDER BY q.ord), '[]'::pg_catalog.json) \
FROM ROWS FROM (pg_catalog.unnest({asked}), pg_catalog.unnest({resolvable})) WITH ORDINALITY AS q(asked, resolvable, ord) \
LEFT JOIN LATERAL (SELECT pg_catalog.to_regtype(q.resolvable)::pg_catalog.oid AS oid) t ON true)",
        asked = text_array(&asked),
        resolvable = text_array(&resolvable),
    )
}

/// The statement's relation: identity, kind, size of its table (tree), partitions, and for a
/// materialized view whether `REFRESH … CONCURRENTLY` can work.
fn relation_json(asked: &Name) -> String {
    format!(
        "(SELECT pg_catalog.json_build_object(\
'asked_schema', {asked_schema}, 'asked_name', {asked_name}, \
'exists', c.oid IS NOT NULL, 'schema', n.nspname, 'name', c.relname, 'relkind', c.relkind::pg_catalog.text, \
'table_schema', CASE WHEN c.relkind IN ('i', 'I') THEN hn.nspname END, \
'table_name', CASE WHEN c.relkind IN ('i', 'I') THEN hc.relname END, \
'rows', CASE WHEN c.oid IS NOT NULL THEN (\
SELECT CASE WHEN pg_catalog.bool_or({unanalyzed}) THEN NULL \
ELSE coalesce(pg_catalog.sum(k.reltuples), 0)::pg_catalog.int8 END \
FROM tree JOIN pg_catalog.pg_class k ON k.oid = tree.relid WHERE k.relkind NOT IN ('p', 'I')) END, \
'bytes', CASE WHEN c.oid IS NULL THEN NULL \
WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_locks l JOIN measured ON l.relation = measured.relid \
WHERE {foreign_access_exclusive}) THEN NULL \
ELSE (SELECT pg_catalog.sum(pg_catalog.pg_total_relation_size(tree.relid))::pg_catalog.int8 FROM tree) END, \
'max_rows', CASE WHEN c.oid IS NULL THEN NULL \
WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_locks l JOIN measured ON l.relation = measured.relid \
WHERE {foreign_access_exclusive}) THEN NULL \
ELSE (SELECT {heap_capacity} FROM tree) END, \
'populated', CASE WHEN c.relkind = 'm' THEN c.relispopulated END, \
'refresh_index', CASE WHEN c.relkind = 'm' THEN (\
SELECT ic.relname FROM pg_catalog.pg_index x \
JOIN pg_catalog.pg_class ic ON ic.oid = x.indexrelid \
JOIN pg_catalog.pg_am am ON am.oid = ic.relam \
WHERE x.indrelid = c.oid AND x.indisunique AND x.indimmediate AND x.indisvalid \
AND x.indpred IS NULL AND x.indexprs IS NULL AND am.amname = 'btree' AND x.indnatts > 0 \
AND 0 < ALL (x.indkey::pg_catalog.int2[]) \
ORDER BY ic.relname LIMIT 1) END, \
'partitions', (SELECT coalesce(pg_catalog.json_agg(pg_catalog.json_build_object(\
'schema', pn.nspname, 'name', k.relname, 'parent_schema', ppn.nspname, 'parent_name', pk.relname, \
'relkind', k.relkind::pg_catalog.text, 'level', tree.level) \
ORDER BY tree.level, pn.nspname, k.relname), '[]'::pg_catalog.json) \
FROM tree JOIN pg_catalog.pg_class k ON k.oid = tree.relid \
JOIN pg_catalog.pg_namespace pn ON pn.oid = k.relnamespace \
JOIN pg_catalog.pg_class pk ON pk.oid = tree.parent \
JOIN pg_catalog.pg_namespace ppn ON ppn.oid = pk.relnamespace \
WHERE tree.level > 0), \
'partition_of', {partition_of}) \
FROM target LEFT JOIN pg_catalog.pg_class c ON c.oid = target.oid \
LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
LEFT JOIN heap ON true \
LEFT JOIN pg_catalog.pg_class hc ON hc.oid = heap.oid \
LEFT JOIN pg_catalog.pg_namespace hn ON hn.oid = hc.relnamespace)",
        asked_schema = text_literal(asked.schema.as_deref()),
        asked_name = text_literal(Some(&asked.name)),
        unanalyzed = UNANALYZED,
        foreign_access_exclusive = FOREIGN_ACCESS_EXCLUSIVE,
        heap_capacity = HEAP_CAPACITY,
        partition_of = PARTITION_OF,
    )
}

/// For a `pg_class` row `c` that is a partition: its parent, whether the parent has a DEFAULT
/// partition, and whether a concurrent detach of it is pending. `inhdetachpending` exists
/// from PostgreSQL 14 on: it is read from the row as JSON, so the query runs on any version
/// (NULL before 14).
const PARTITION_OF: &str = "CASE WHEN c.relispartition THEN (\
SELECT pg_catalog.json_build_object('schema', pn.nspname, 'name', pc.relname, \
'has_default', pt.partdefid IS NOT NULL AND pt.partdefid <> 0, \
'detach_pending', (pg_catalog.row_to_json(i.*) ->> 'inhdetachpending')::pg_catalog.bool) \
FROM pg_catalog.pg_inherits i JOIN pg_catalog.pg_class pc ON pc.oid = i.inhparent \
JOIN pg_catalog.pg_namespace pn ON pn.oid = pc.relnamespace \
LEFT JOIN pg_catalog.pg_partitioned_table pt ON pt.partrelid = i.inhparent \
WHERE i.inhrelid = c.oid LIMIT 1) END";

/// A leaf `k` (a `pg_class` row) has no row estimate: never analyzed or vacuumed (`reltuples`
/// is -1 on PostgreSQL 14+; before 14 it is 0 with `relpages` 0, which a vacuumed empty table
/// also shows — then the exact heap bound decides instead, so nothing is lost).
const UNANALYZED: &str = "k.reltuples < 0 OR (k.reltuples = 0 AND k.relpages = 0)";

/// A `pg_locks` row `l` is ACCESS EXCLUSIVE held or awaited by another session in this
/// database: measuring a relation it is on would queue behind it (see the module docs).
const FOREIGN_ACCESS_EXCLUSIVE: &str = "l.locktype = 'relation' AND l.mode = 'AccessExclusiveLock' \
AND l.database = (SELECT d.oid FROM pg_catalog.pg_database d WHERE d.datname = pg_catalog.current_database()) \
AND l.pid IS DISTINCT FROM pg_catalog.pg_backend_pid()";

/// The most tuples the heaps of a `tree` (relid column) can hold: main-fork pages times
/// `MaxHeapTuplesPerPage` = (BLCKSZ - page header 24) / (tuple header 24 + line pointer 4).
/// A partitioned parent has no storage (size 0), so the sum is over the leaves.
const HEAP_CAPACITY: &str = "pg_catalog.sum(pg_catalog.pg_relation_size(tree.relid))::pg_catalog.int8 \
/ pg_catalog.current_setting('block_size')::pg_catalog.int8 \
* ((pg_catalog.current_setting('block_size')::pg_catalog.int8 - 24) / 28)";

/// `'rows', …, 'max_rows', …, 'bytes', …` for the relation whose OID is the SQL expression
/// `root` (NULL when it does not exist): the same facts, read the same way, as the statement's
/// own relation gets, for a second table a size-dependent rule needs (the referenced table of a
/// foreign key, the table an ATTACH PARTITION scans). Self-contained: its own partition tree.
fn tree_sizes_json(root: &str) -> String {
    let tree = format!(
        "WITH RECURSIVE tree(relid) AS (SELECT {root} WHERE {root} IS NOT NULL \
UNION ALL SELECT i.inhrelid FROM tree JOIN pg_catalog.pg_inherits i ON i.inhparent = tree.relid \
JOIN pg_catalog.pg_class k ON k.oid = i.inhrelid WHERE k.relispartition), \
measured(relid) AS (\
SELECT tree.relid FROM tree \
UNION SELECT x.indexrelid FROM tree JOIN pg_catalog.pg_index x ON x.indrelid = tree.relid \
UNION SELECT k.reltoastrelid FROM tree JOIN pg_catalog.pg_class k ON k.oid = tree.relid \
UNION SELECT x.indexrelid FROM tree JOIN pg_catalog.pg_class k ON k.oid = tree.relid \
JOIN pg_catalog.pg_index x ON x.indrelid = k.reltoastrelid)"
    );
    let unlocked = format!(
        "NOT EXISTS (SELECT 1 FROM pg_catalog.pg_locks l JOIN measured ON l.relation = measured.relid \
WHERE {FOREIGN_ACCESS_EXCLUSIVE})"
    );
    format!(
        "'rows', CASE WHEN {root} IS NOT NULL THEN ({tree} \
SELECT CASE WHEN pg_catalog.bool_or({UNANALYZED}) THEN NULL \
ELSE coalesce(pg_catalog.sum(k.reltuples), 0)::pg_catalog.int8 END \
FROM tree JOIN pg_catalog.pg_class k ON k.oid = tree.relid WHERE k.relkind NOT IN ('p', 'I')) END, \
'max_rows', CASE WHEN {root} IS NOT NULL THEN ({tree} \
SELECT CASE WHEN {unlocked} THEN (SELECT {HEAP_CAPACITY} FROM tree) END) END, \
'bytes', CASE WHEN {root} IS NOT NULL THEN ({tree} \
SELECT CASE WHEN {unlocked} THEN \
(SELECT pg_catalog.sum(pg_catalog.pg_total_relation_size(tree.relid))::pg_catalog.int8 FROM tree) END) END"
    )
}

/// Dependencies PostgreSQL follows when it drops an object even under RESTRICT: auto,
/// internal, extension membership, auto-extension, partition. Any other `deptype` from an
/// object outside the dropped set is a dependent CASCADE would drop (see [`DropFacts`]).
const SILENT_DEPTYPES: &str = "('a', 'i', 'e', 'x', 'P', 'S')";

/// A `pg_depend` row `d` refers to an object in the closure row `{c}` (a whole object covers
/// its sub-objects, such as a relation's columns).
fn depends_on(c: &str) -> String {
    format!(
        "d.refclassid = {c}.classid AND d.refobjid = {c}.objid AND ({c}.objsubid = 0 OR d.refobjsubid = {c}.objsubid)"
    )
}

/// The objects a `DROP … CASCADE` of several objects drops as a whole, statement-wide CTEs
/// `dropped` and `dropped_closure` (PostgreSQL drops the objects of one statement together: a
/// dependent of one that is another, or part of another, blocks nothing under RESTRICT). Only
/// objects whose name has exactly one candidate are in it, and no function (its argument list
/// is not matched here, so a candidate may not be what is dropped): a candidate the statement
/// may not drop must never excuse a dependent. `None` when no object qualifies.
fn dropped_ctes(catalog: DropCatalog, objects: &[DropObject]) -> Option<String> {
    if catalog == DropCatalog::Proc || objects.len() < 2 {
        return None;
    }
    let sure: Vec<String> = objects
        .iter()
        .filter_map(|o| drop_candidates(catalog, o))
        .map(|(candidates, _)| {
            format!(
                "SELECT * FROM ({candidates}) c WHERE (SELECT pg_catalog.count(*) FROM ({candidates}) x) = 1"
            )
        })
        .collect();
    if sure.is_empty() {
        return None;
    }
    Some(format!(
        "dropped(classid, objid) AS ({}), \
dropped_closure(classid, objid, objsubid) AS (\
SELECT dropped.classid, dropped.objid, 0 FROM dropped \
UNION SELECT d.classid, d.objid, d.objsubid FROM dropped_closure c \
JOIN pg_catalog.pg_depend d ON {down} WHERE d.deptype IN {SILENT_DEPTYPES}), ",
        sure.join(" UNION ALL "),
        down = depends_on("c"),
    ))
}

/// The `(classid, objid)` of every object a dropped name may be on the search path, and a
/// query that is non-empty when an object of that name exists in any schema. `None` for a
/// name no object can have.
fn drop_candidates(catalog: DropCatalog, object: &DropObject) -> Option<(String, String)> {
    let name = &object.name;
    // Only ASCII names are asked about (as in `created`): a name the server would read or fold
    // differently (another client_encoding, a single-byte server encoding's case folding)
    // could resolve to nothing here while the DROP finds it — and "nothing there" can allow
    // an `IF EXISTS`.
    let askable = |s: &str| storable(s) && s.is_ascii();
    if !askable(&name.name) || !name.schema.as_deref().is_none_or(askable) {
        return None;
    }
    let lit = |s: &str| format!("{}::pg_catalog.name", quote::literal(s));
    let in_path = match &name.schema {
        Some(s) => format!("n.nspname = {}", lit(s)),
        None => "n.nspname = ANY (pg_catalog.current_schemas(true))".to_owned(),
    };
    let named = lit(&name.name);
    let (candidates, anywhere) = match catalog {
        DropCatalog::Proc => (
            format!(
                "SELECT 'pg_catalog.pg_proc'::pg_catalog.regclass::pg_catalog.oid, p.oid FROM pg_catalog.pg_proc p \
JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace WHERE p.proname = {named} AND {in_path}"
            ),
            format!("SELECT 1 FROM pg_catalog.pg_proc p WHERE p.proname = {named}"),
        ),
        DropCatalog::Type => (
            format!(
                "SELECT 'pg_catalog.pg_type'::pg_catalog.regclass::pg_catalog.oid, t.oid FROM pg_catalog.pg_type t \
JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace WHERE t.typname = {named} AND {in_path}"
            ),
            format!("SELECT 1 FROM pg_catalog.pg_type t WHERE t.typname = {named}"),
        ),
        // Every relation of the kind by that name on the search path, not only the first: the
        // dependents of all of them are counted (conservative). `anywhere`: of the same kind.
        DropCatalog::Relation(kinds) => (
            format!(
                "SELECT 'pg_catalog.pg_class'::pg_catalog.regclass::pg_catalog.oid, k.oid FROM pg_catalog.pg_class k \
JOIN pg_catalog.pg_namespace n ON n.oid = k.relnamespace WHERE k.relname = {named} AND k.relkind IN {kinds} AND {in_path}"
            ),
            format!(
                "SELECT 1 FROM pg_catalog.pg_class k WHERE k.relname = {named} AND k.relkind IN {kinds}"
            ),
        ),
        // Schemas and extensions have unqualified names only.
        DropCatalog::Namespace | DropCatalog::Extension if name.schema.is_some() => return None,
        DropCatalog::Namespace => (
            format!(
                "SELECT 'pg_catalog.pg_namespace'::pg_catalog.regclass::pg_catalog.oid, n.oid FROM pg_catalog.pg_namespace n WHERE n.nspname = {named}"
            ),
            format!("SELECT 1 FROM pg_catalog.pg_namespace n WHERE n.nspname = {named}"),
        ),
        DropCatalog::Extension => (
            format!(
                "SELECT 'pg_catalog.pg_extension'::pg_catalog.regclass::pg_catalog.oid, e.oid FROM pg_catalog.pg_extension e WHERE e.extname = {named}"
            ),
            format!("SELECT 1 FROM pg_catalog.pg_extension e WHERE e.extname = {named}"),
        ),
    };
    Some((candidates, anywhere))
}

/// One dropped object: its candidates by name, and the dependents and escapes of each (see
/// [`DropFacts`]). `None` for a name no object can have (then the object has no facts, and
/// the rule assumes the worst). `statement_wide`: the statement's [`dropped_ctes`] exist, and
/// a dependent inside them is dropped by the statement anyway.
fn drop_json(catalog: DropCatalog, object: &DropObject, statement_wide: bool) -> Option<String> {
    let name = &object.name;
    let (candidates, anywhere) = drop_candidates(catalog, object)?;
    let inside = |class: &str, id: &str, sub: &str| {
        format!(
            "EXISTS (SELECT 1 FROM closure o WHERE o.root = c.root AND o.classid = {class} \
AND o.objid = {id} AND (o.objsubid = 0 OR o.objsubid = {sub}))"
        )
    };
    let dependent_inside = if statement_wide {
        format!(
            "({} OR EXISTS (SELECT 1 FROM dropped_closure o WHERE o.classid = d.classid \
AND o.objid = d.objid AND (o.objsubid = 0 OR o.objsubid = d.objsubid)))",
            inside("d.classid", "d.objid", "d.objsubid")
        )
    } else {
        inside("d.classid", "d.objid", "d.objsubid")
    };
    Some(format!(
        "(WITH RECURSIVE cand(classid, objid) AS ({candidates}), \
closure(root, classid, objid, objsubid) AS (\
SELECT cand.objid, cand.classid, cand.objid, 0 FROM cand \
UNION SELECT c.root, d.classid, d.objid, d.objsubid FROM closure c \
JOIN pg_catalog.pg_depend d ON {down} WHERE d.deptype IN {SILENT_DEPTYPES}), \
blockers AS (SELECT DISTINCT c.root, d.classid, d.objid, d.objsubid FROM closure c \
JOIN pg_catalog.pg_depend d ON {down} \
WHERE d.deptype NOT IN {SILENT_DEPTYPES} AND NOT {dependent_inside}), \
escapes AS (SELECT DISTINCT c.root, d.refclassid, d.refobjid FROM closure c \
JOIN pg_catalog.pg_depend d ON d.classid = c.classid AND d.objid = c.objid AND (c.objsubid = 0 OR d.objsubid = c.objsubid) \
WHERE d.deptype IN ('i', 'e', 'P', 'S') AND NOT {owner_inside}) \
SELECT pg_catalog.json_build_object(\
'asked_schema', {asked_schema}, 'asked_name', {asked_name}, \
'candidates', (SELECT pg_catalog.count(*) FROM cand), \
'anywhere', EXISTS ({anywhere}), \
'dependents', (SELECT pg_catalog.count(*) FROM blockers), \
'escapes', (SELECT pg_catalog.count(*) FROM escapes), \
'names', (SELECT coalesce(pg_catalog.json_agg(coalesce(\
(SELECT pg_catalog.pg_describe_object('pg_catalog.pg_class'::pg_catalog.regclass, r.ev_class, 0) \
FROM pg_catalog.pg_rewrite r WHERE b.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass \
AND r.oid = b.objid AND r.rulename = '_RETURN'), \
pg_catalog.pg_describe_object(b.classid, b.objid, b.objsubid)) \
ORDER BY b.classid, b.objid, b.objsubid), '[]'::pg_catalog.json) FROM \
(SELECT DISTINCT x.classid, x.objid, x.objsubid FROM blockers x ORDER BY 1, 2, 3 LIMIT 5) b)))",
        down = depends_on("c"),
        owner_inside = inside("d.refclassid", "d.refobjid", "d.refobjsubid"),
        asked_schema = text_literal(name.schema.as_deref()),
        asked_name = text_literal(Some(&name.name)),
    ))
}

/// The named columns of the target relation: type, nullability, CHECKs and indexes on them.
fn columns_json(columns: &[&str]) -> String {
    format!(
        "(SELECT coalesce(pg_catalog.json_agg(pg_catalog.json_build_object(\
'name', q.name, 'exists', a.attnum IS NOT NULL, \
'type', pg_catalog.format_type(a.atttypid, a.atttypmod), \
'type_oid', a.atttypid::pg_catalog.int8, 'typmod', a.atttypmod, \
'not_null', a.attnotnull AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint k \
WHERE k.conrelid = a.attrelid AND k.contype = 'n' AND NOT k.convalidated AND a.attnum = ANY (k.conkey)), \
'nullable', NOT a.attnotnull AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint k \
WHERE k.conrelid = a.attrelid AND k.contype = 'n' AND a.attnum = ANY (k.conkey)), \
'has_default', a.atthasdef AND coalesce(pg_catalog.to_json(a) ->> 'attgenerated', '') = '', \
'collation', (SELECT l.collname FROM pg_catalog.pg_collation l WHERE l.oid = a.attcollation AND l.oid <> 100), \
'citext', a.atttypid IS NOT NULL AND EXISTS (SELECT 1 FROM pg_catalog.pg_depend d \
JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid \
WHERE d.classid = 'pg_catalog.pg_type'::pg_catalog.regclass AND d.objid = a.atttypid \
AND d.refclassid = 'pg_catalog.pg_extension'::pg_catalog.regclass AND d.deptype = 'e' \
AND e.extname = 'citext'), \
'checks', (SELECT coalesce(pg_catalog.json_agg(pg_catalog.json_build_object(\
'name', k.conname, 'definition', pg_catalog.pg_get_constraintdef(k.oid)) ORDER BY k.conname), '[]'::pg_catalog.json) \
FROM pg_catalog.pg_constraint k WHERE k.conrelid = a.attrelid AND k.contype = 'c' AND k.convalidated \
AND a.attnum = ANY (k.conkey)), \
'indexes', (SELECT coalesce(pg_catalog.json_agg(pg_catalog.json_build_object(\
'name', ic.relname, 'plain', x.indexprs IS NULL AND x.indpred IS NULL AND x.indisvalid) ORDER BY ic.relname), '[]'::pg_catalog.json) \
FROM pg_catalog.pg_index x JOIN pg_catalog.pg_class ic ON ic.oid = x.indexrelid \
WHERE x.indrelid = a.attrelid AND (a.attnum = ANY (x.indkey::pg_catalog.int2[]) \
OR EXISTS (SELECT 1 FROM pg_catalog.pg_depend d \
WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.objid = x.indexrelid \
AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.refobjid = a.attrelid \
AND d.refobjsubid = a.attnum)))\
) ORDER BY q.ord), '[]'::pg_catalog.json) \
FROM pg_catalog.unnest({names}) WITH ORDINALITY AS q(name, ord) \
LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = (SELECT target.oid FROM target) \
AND a.attname = q.name::pg_catalog.name AND a.attnum > 0 AND NOT a.attisdropped)",
        names = text_array(columns)
    )
}

/// Every overload's volatility for each function name, in any schema: the model has only the
/// unqualified name, so a volatile overload anywhere counts (assume volatile when unsure).
fn functions_json(functions: &[&str]) -> String {
    format!(
        "(SELECT coalesce(pg_catalog.json_agg(pg_catalog.json_build_object(\
'name', q.name, 'volatility', (SELECT coalesce(pg_catalog.json_agg(DISTINCT p.provolatile::pg_catalog.text), '[]'::pg_catalog.json) \
FROM pg_catalog.pg_proc p WHERE p.proname = q.name::pg_catalog.name)) ORDER BY q.ord), '[]'::pg_catalog.json) \
FROM pg_catalog.unnest({names}) WITH ORDINALITY AS q(name, ord))",
        names = text_array(functions)
    )
}

/// A table referenced by a foreign key (or attached as a partition), or a further index of a
/// `DROP INDEX a, b`: does it exist, what is it, and how big is its table (its whole
/// partition tree). For an index, the server's `pg_index.indrelid` names the table measured —
/// never the index itself, whose own size says nothing about the lock's reach.
fn referenced_json(asked: &Name) -> String {
    format!(
        "(SELECT pg_catalog.json_build_object(\
'asked_schema', {asked_schema}, 'asked_name', {asked_name}, \
'exists', c.oid IS NOT NULL, 'schema', n.nspname, 'name', c.relname, 'relkind', c.relkind::pg_catalog.text, \
'table_schema', hn.nspname, 'table_name', hc.relname, \
{sizes}, 'partition_of', {partition_of}) \
FROM (SELECT {oid} AS oid) r LEFT JOIN pg_catalog.pg_class c ON c.oid = r.oid \
LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
LEFT JOIN pg_catalog.pg_index x ON x.indexrelid = c.oid \
LEFT JOIN pg_catalog.pg_class hc ON hc.oid = x.indrelid \
LEFT JOIN pg_catalog.pg_namespace hn ON hn.oid = hc.relnamespace)",
        asked_schema = text_literal(asked.schema.as_deref()),
        asked_name = text_literal(Some(&asked.name)),
        oid = regclass_expr(asked),
        sizes = tree_sizes_json("coalesce(x.indrelid, c.oid)"),
        partition_of = PARTITION_OF,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{DropFacts, PartitionOf, Thresholds, parse_facts};
    use crate::sql::lexer::LexOptions;
    use crate::sql::parse;
    fn ddl(sql: &str) -> Ddl {
        parse::understand(sql.as_bytes(), 0, sql.len(), LexOptions::default())
    }
    #[test]
    fn quoting_round_trips_any_name() {
        assert_eq!(quote::ident("Users"), "\"Users\"");
        assert_eq!(quote::ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote::literal("it's"), "'it''s'");
        assert_eq!(quote::literal("a\\b'c"), "E'a\\\\b''c'");
        assert_eq!(
            regclass_expr(&Name::new(Some("My Schema"), "it's \"x\"")),
            "pg_catalog.to_regclass('\"My Schema\".\"it''s \"\"x\"\"\"'::pg_catalog.text)::pg_catalog.oid"
        );
        // Names no relation can have are never sent.
        for bad in [Name::bare(""), Name::new(Some(""), "t"), Name::bare("a\0b")] {
            assert_eq!(regclass_expr(&bad), "NULL::pg_catalog.oid");
        }
        assert_eq!(text_literal(Some("x\0")), "NULL::pg_catalog.text");
        assert_eq!(
            text_array(&["a", "", "b'c", "\0"]),
            "ARRAY['a', 'b''c']::pg_catalog.text[]"
        );
    }

    #[test]
    fn every_index_of_a_drop_index_list_is_asked_about_by_its_table() {
        let q = facts_query(&ddl("DROP INDEX a, s.\"B\", a")).expect("facts");
        // The first index is the relation, the others referenced relations, each once.
        assert!(q.contains("'asked_name', 'a'::pg_catalog.text"), "{q}");
        assert_eq!(
            q.matches("to_regclass('\"s\".\"B\"'::pg_catalog.text)")
                .count(),
            1,
            "{q}"
        );
        // A referenced index is measured by its table (pg_index.indrelid), never by itself.
        assert!(q.contains("coalesce(x.indrelid, c.oid)"), "{q}");
        let facts = parse_facts(
            r#"{"timezone": "UTC", "relation": null, "referenced": [{"asked_schema": "s",
                "asked_name": "B", "exists": true, "schema": "s", "name": "B", "relkind": "i",
                "table_schema": "s", "table_name": "t", "rows": 0, "max_rows": 0, "bytes": 8192}]}"#,
        )
        .expect("facts");
        let b = facts
            .referenced(&Name::new(Some("s"), "B"))
            .expect("referenced");
        assert_eq!(b.table, Some(Name::new(Some("s"), "t")));
        assert!(b.is_small(&Thresholds::default()));
    }

    #[test]
    fn drop_table_asks_whether_each_table_is_a_partition() {
        let q = facts_query(&ddl("DROP TABLE ev_2025, other")).expect("facts");
        // On any version: inhdetachpending (14+) is read through the row's JSON.
        assert!(
            q.contains("'partition_of', CASE WHEN c.relispartition")
                && q.contains("row_to_json(i.*) ->> 'inhdetachpending'")
                && !q.contains("i.inhdetachpending"),
            "{q}"
        );
        assert_eq!(q.matches("'partition_of'").count(), 2, "{q}");
        // (JSON, what it says)
        let cases: [(&str, Option<PartitionOf>); 3] = [
            (
                r#"{"schema": "public", "name": "ev", "has_default": false, "detach_pending": true}"#,
                Some(PartitionOf {
                    parent: Name::new(Some("public"), "ev"),
                    parent_has_default: false,
                    detach_pending: true,
                }),
            ),
            // Before PostgreSQL 14 there is no pending detach.
            (
                r#"{"schema": "s", "name": "m", "has_default": true, "detach_pending": null}"#,
                Some(PartitionOf {
                    parent: Name::new(Some("s"), "m"),
                    parent_has_default: true,
                    detach_pending: false,
                }),
            ),
            ("null", None),
        ];
        for (json, expected) in cases {
            let facts = parse_facts(&format!(
                r#"{{"timezone": "UTC", "relation": {{"asked_schema": null, "asked_name": "ev_2025",
                    "exists": true, "schema": "public", "name": "ev_2025", "relkind": "r",
                    "partition_of": {json}}}}}"#
            ))
            .expect("facts");
            assert_eq!(
                facts.relation.expect("relation").partition_of,
                expected,
                "{json}"
            );
        }
    }

    #[test]
    fn drop_cascade_asks_for_the_dependents_of_each_object() {
        let q = facts_query(&ddl(
            "DROP FUNCTION IF EXISTS f(int), \"S\".\"it's\" CASCADE",
        ))
        .expect("facts");
        assert!(
            q.contains("'drops', pg_catalog.json_build_array((WITH RECURSIVE cand"),
            "{q}"
        );
        assert!(q.contains("p.proname = 'f'::pg_catalog.name AND n.nspname = ANY (pg_catalog.current_schemas(true))"), "{q}");
        assert!(
            q.contains("p.proname = 'it''s'::pg_catalog.name AND n.nspname = 'S'::pg_catalog.name"),
            "{q}"
        );
        assert!(q.contains("pg_catalog.pg_describe_object"), "{q}");
        for sql in [
            "DROP TYPE t CASCADE",
            "DROP DOMAIN d CASCADE",
            "DROP SCHEMA s CASCADE",
            "DROP EXTENSION e CASCADE",
            "DROP PROCEDURE p CASCADE",
            "DROP VIEW v CASCADE",
            "DROP MATERIALIZED VIEW mv CASCADE",
            "DROP SEQUENCE s CASCADE",
        ] {
            assert!(
                facts_query(&ddl(sql)).is_some_and(|q| q.contains("closure")),
                "{sql}"
            );
        }
        // Several objects: the statement drops them together, and only names with one
        // candidate count as dropped; never for functions (their arguments are not matched).
        let q = facts_query(&ddl("DROP VIEW a, b CASCADE")).expect("facts");
        assert!(
            q.contains("WITH RECURSIVE dropped(classid, objid) AS ("),
            "{q}"
        );
        assert!(q.contains(") x) = 1 UNION ALL SELECT"), "{q}");
        assert!(
            q.contains("OR EXISTS (SELECT 1 FROM dropped_closure o"),
            "{q}"
        );
        for sql in ["DROP VIEW a CASCADE", "DROP FUNCTION f(int), g() CASCADE"] {
            let q = facts_query(&ddl(sql)).expect("facts");
            assert!(!q.contains("dropped_closure"), "{sql}: {q}");
        }
        // A view is looked for among views only (a table of that name is not it).
        let q = facts_query(&ddl("DROP VIEW v CASCADE")).expect("facts");
        assert!(
            q.contains("k.relname = 'v'::pg_catalog.name AND k.relkind IN ('v')"),
            "{q}"
        );
        // Kinds whose dependents are not counted, forms not understood, and no CASCADE.
        for sql in [
            "DROP SERVER s CASCADE",
            "DROP TYPE mood[] CASCADE",
            "DROP FUNCTION f(int)",
            "DROP OPERATOR === (int, int) CASCADE",
        ] {
            assert_eq!(facts_query(&ddl(sql)), None, "{sql}");
        }
        // Non-ASCII names are not asked about: no facts for that object.
        let q = facts_query(&ddl("DROP TYPE IF EXISTS \"tÿpe\" CASCADE"));
        assert!(q.is_none_or(|q| !q.contains("closure")));
        // A schema has no schema: no facts for that object (the rule then assumes the worst).
        let q = facts_query(&ddl("DROP SCHEMA a.b CASCADE"));
        assert!(q.is_none_or(|q| !q.contains("closure")));
        let facts = parse_facts(
            r#"{"timezone": "UTC", "relation": null, "drops": [{"asked_schema": null, "asked_name": "f",
                "candidates": 2, "anywhere": true, "dependents": 1, "escapes": 0,
                "names": ["view v", null]}]}"#,
        )
        .expect("facts");
        assert_eq!(
            facts.drops,
            vec![DropFacts {
                asked: Name::bare("f"),
                candidates: 2,
                anywhere: true,
                dependents: 1,
                escapes: 0,
                names: vec!["view v".to_owned()],
            }]
        );
        assert!(
            parse_facts(
                r#"{"timezone": null, "relation": null, "drops": [{"asked_schema": null, "asked_name": "f",
                    "candidates": -1, "anywhere": true, "dependents": 0, "escapes": 0}]}"#
            )
            .is_err()
        );
    }

    #[test]
    fn only_statements_rules_use_facts_for_get_a_query() {
        for sql in [
            "CREATE TABLE t (id int REFERENCES other (id))",
            "ALTER INDEX i SET TABLESPACE x",
            "ALTER VIEW v OWNER TO bob",
            "ALTER VIEW v RENAME TO w",
            "REINDEX INDEX CONCURRENTLY i",
            "REINDEX SCHEMA public",
            "REFRESH MATERIALIZED VIEW CONCURRENTLY mv",
            "ALTER TABLE t OWNER TO bob",
            "VACUUM FULL",
            "VACUUM FULL a, b",
            "CLUSTER",
            "VACUUM t",
        ] {
            assert_eq!(facts_query(&ddl(sql)), None, "{sql}");
        }
        for sql in [
            "CREATE INDEX i ON t (x)",
            "CREATE INDEX i ON ONLY t (x)",
            // Refused by PostgreSQL on a partitioned table / index: the relkind decides.
            "CREATE INDEX CONCURRENTLY i ON t (x)",
            "DROP INDEX CONCURRENTLY i",
            "ALTER INDEX i RENAME TO j",
            "ALTER MATERIALIZED VIEW v RENAME COLUMN a TO b",
            "DROP INDEX i",
            "REINDEX TABLE t",
            "REFRESH MATERIALIZED VIEW mv",
            "ALTER TABLE t ALTER COLUMN c TYPE text",
            "ALTER TABLE t ALTER COLUMN c SET NOT NULL",
            // ban-drop-not-null: nothing to drop on a column without NOT NULL.
            "ALTER TABLE t ALTER COLUMN c DROP NOT NULL",
            "ALTER TABLE t ADD COLUMN c uuid DEFAULT gen_random_uuid()",
            "ALTER TABLE t ADD CONSTRAINT fk FOREIGN KEY (c) REFERENCES o (id) NOT VALID",
            // Sizes for the small-table allowance.
            "ALTER TABLE t ADD COLUMN c int",
            "ALTER TABLE t ADD CONSTRAINT c CHECK (x > 0)",
            "ALTER TABLE t ADD PRIMARY KEY (id)",
            "ALTER TABLE t ATTACH PARTITION p FOR VALUES IN (1)",
            "VACUUM FULL t",
            "CLUSTER t",
            // Is it a partition (its parent, a DEFAULT partition, a pending detach)?
            "DROP TABLE t",
            "DROP TABLE IF EXISTS a, b",
        ] {
            let q = facts_query(&ddl(sql)).unwrap_or_else(|| panic!("{sql} needs facts"));
            assert!(
                q.starts_with("/* ddlgate catalog facts */ WITH RECURSIVE"),
                "{q}"
            );
        }
    }

    #[test]
    fn query_carries_every_name_as_a_quoted_literal() {
        let q = facts_query(&ddl(
            "ALTER TABLE \"App\".\"it's\" ALTER COLUMN \"Col\"\"1\" TYPE text, ALTER COLUMN \"Col\"\"1\" SET NOT NULL, \
             ADD COLUMN d int DEFAULT \"My_Fn\"(), ADD CONSTRAINT fk FOREIGN KEY (d) REFERENCES s.\"Ref\" (id)",
        ))
        .expect("facts");
        assert!(
            q.contains("pg_catalog.to_regclass('\"App\".\"it''s\"'::pg_catalog.text)"),
            "{q}"
        );
        assert!(q.contains("'asked_schema', 'App'::pg_catalog.text"), "{q}");
        assert!(q.contains("'asked_name', 'it''s'::pg_catalog.text"), "{q}");
        // The column is asked for once, although two sub-commands name it.
        assert!(q.contains("ARRAY['Col\"1']::pg_catalog.text[]"), "{q}");
        assert!(q.contains("ARRAY['My_Fn']::pg_catalog.text[]"), "{q}");
        assert!(
            q.contains("pg_catalog.to_regclass('\"s\".\"Ref\"'::pg_catalog.text)"),
            "{q}"
        );
        // Statements are lexed like any client SQL: the query is one statement.
        assert_eq!(
            crate::sql::lexer::count_statements(q.as_bytes(), LexOptions::default()),
            1
        );
    }
}

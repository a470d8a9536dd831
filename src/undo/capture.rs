//! The `Before` snapshot an inverse is computed from: what the catalog says, just before a DDL
//! statement runs, about the objects it changes. One read-only query per message (a JSON array,
//! one element per DDL statement, in statement order), built here from the statements as
//! understood; every name in it is quoted with `sql::quote` and resolved by the server
//! (`to_regclass`), so the snapshot holds OIDs and the names the server confirms, never the
//! names as written.

use std::collections::HashMap;

use serde::Deserialize;

use crate::sql::quote;
use crate::sql::statement::{AlterOp, Ddl, DdlKind, Name};

/// A relation as the server resolved it.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub struct Rel {
    pub oid: i64,
    pub schema: String,
    pub name: String,
}

/// A dropped index's saved definition.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub struct IndexSnap {
    pub oid: i64,
    pub schema: String,
    pub name: String,
    /// `pg_get_indexdef`.
    pub def: String,
    /// The table it is on.
    pub table: i64,
    /// A constraint owns it (primary key, unique, exclusion): re-creating the index alone
    /// would not bring the constraint back.
    pub constraint: bool,
}

/// A constraint's saved definition.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub struct ConSnap {
    /// `pg_get_constraintdef`.
    pub def: String,
    /// `pg_constraint.contype`: `f`, `c`, `u`, `p`, `x`, `n`, `t`.
    #[serde(rename = "type")]
    pub kind: String,
}

/// A column's state the inverse of SET/DROP DEFAULT and SET/DROP NOT NULL needs.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub struct ColSnap {
    /// `pg_get_expr` of its default, `None` without one.
    pub default: Option<String>,
    pub not_null: bool,
}

/// A view or function as the catalog had it (`None` in [`Before::objects`]: it did not exist).
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct ObjSnap {
    pub schema: String,
    pub name: String,
    /// Its OID, when it existed.
    pub oid: Option<i64>,
    /// `pg_get_viewdef` / `pg_get_functiondef`, when it existed.
    pub def: Option<String>,
    /// A view's `reloptions` (`security_barrier=true`, `check_option=local`, …).
    pub options: Option<Vec<String>>,
    /// A function of that name existed in the schema (any arguments).
    pub name_taken: bool,
    /// A function's parameter list as written, without defaults.
    pub args: Option<String>,
}

/// What the catalog said before one DDL statement ran.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct Before {
    /// The table (view, index) the statement changes, when it existed.
    pub table: Option<Rel>,
    /// The schema an object the statement creates lands in (its own, or `current_schema()`).
    pub schema: Option<String>,
    /// The object the statement creates already existed (`IF NOT EXISTS`: nothing happens).
    pub exists: bool,
    /// Dropped indexes, in the statement's order (`None`: it did not exist).
    pub indexes: Vec<Option<IndexSnap>>,
    /// Constraints the statement drops, by name.
    #[serde(deserialize_with = "null_as_empty")]
    pub constraints: HashMap<String, ConSnap>,
    /// Columns whose default or nullability the statement changes, by name.
    #[serde(deserialize_with = "null_as_empty")]
    pub columns: HashMap<String, ColSnap>,
    /// Views and functions the statement creates or drops, in its order.
    pub objects: Vec<Option<ObjSnap>>,
    /// `[from, to]` of `RENAME CONSTRAINT from TO to` (`from` empty for `ALTER INDEX … RENAME
    /// TO to`, whose old name is `table`'s), read from the statement's tokens.
    pub renamed: Option<Vec<String>>,
    /// The statement said `IF EXISTS`: an object missing from the snapshot was not there (else
    /// it could not be resolved, and its inverse is unknown).
    pub if_exists: bool,
    /// The OIDs of the table's indexes before an unnamed `CREATE INDEX` (`None`: not read).
    pub prior_indexes: Option<Vec<i64>>,
    /// The OIDs of the table's constraints before an `ALTER TABLE … ADD` of an unnamed
    /// constraint (`None`: not read).
    pub prior_constraints: Option<Vec<i64>>,
    /// What the statement created without a name, as the server named it: read by OID right
    /// after it ran ([`created_query`]), on the same connection (`None`: not read — then the
    /// inverse cannot name it).
    pub created: Option<Vec<Created>>,
}

/// An index or constraint a statement created, not among the table's OIDs before it ran.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub struct Created {
    pub schema: String,
    pub name: String,
    /// `i` for an index; else `pg_constraint.contype`.
    pub kind: String,
}

/// `json_object_agg` over no rows is NULL.
fn null_as_empty<'de, D, T>(d: D) -> Result<HashMap<String, T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<HashMap<String, T>>::deserialize(d)?.unwrap_or_default())
}

/// The SQL expression resolving `n` to its `regclass` (NULL when it does not exist).
fn regclass(n: &Name) -> String {
    format!("to_regclass({})", quote::literal(&quote::name(n)))
}

/// A JSON `{oid, schema, name}` of relation `oid_expr`, or NULL.
fn rel_json(oid_expr: &str) -> String {
    format!(
        "(SELECT json_build_object('oid', c.oid::int8, 'schema', n.nspname, 'name', c.relname) \
         FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.oid = {oid_expr})"
    )
}

/// The schema `n` is created in: the one written, else the first of the search path.
fn schema_of(n: &Name) -> String {
    match &n.schema {
        Some(s) => quote::literal(s),
        None => "current_schema()".to_owned(),
    }
}

fn literal_list(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| quote::literal(n))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The snapshot of the views and functions of a statement (see [`objects`]).
fn objects_item(tag: &str, objs: &[Object], if_exists: bool) -> String {
    let snaps: Vec<String> = objs
        .iter()
        .map(|o| {
            let lit_name = quote::literal(&o.name.name);
            let schema = schema_of(&o.name);
            let args = quote::literal(o.args.as_deref().unwrap_or(""));
            match tag {
                "CREATE VIEW" => format!(
                    "(SELECT json_build_object('schema', x.s, 'name', {lit_name}, 'oid', c.oid::int8, \
                     'def', pg_catalog.pg_get_viewdef(c.oid), 'options', c.reloptions) \
                     FROM (SELECT {schema} AS s) x LEFT JOIN pg_catalog.pg_class c \
                     ON c.oid = to_regclass(pg_catalog.quote_ident(x.s) || '.' || pg_catalog.quote_ident({lit_name})))"
                ),
                "DROP VIEW" => format!(
                    "(SELECT json_build_object('schema', n.nspname, 'name', c.relname, 'oid', c.oid::int8, \
                     'def', pg_catalog.pg_get_viewdef(c.oid), 'options', c.reloptions) \
                     FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                     WHERE c.oid = {} AND c.relkind = 'v')",
                    regclass(&o.name)
                ),
                "CREATE FUNCTION" => format!(
                    "(SELECT json_build_object('schema', x.s, 'name', {lit_name}, 'args', {args}, \
                     'name_taken', EXISTS (SELECT 1 FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n \
                     ON n.oid = p.pronamespace WHERE n.nspname = x.s AND p.proname = {lit_name})) \
                     FROM (SELECT {schema} AS s) x)"
                ),
                _ => {
                    // DROP FUNCTION: the function PostgreSQL would drop.
                    let target = match &o.args {
                        Some(a) => format!(
                            "to_regprocedure({})",
                            quote::literal(&format!("{}{a}", quote::name(&o.name)))
                        ),
                        None => format!("to_regproc({})", quote::literal(&quote::name(&o.name))),
                    };
                    format!(
                        "(SELECT json_build_object('schema', n.nspname, 'name', p.proname, 'oid', p.oid::int8, \
                         'def', CASE WHEN p.prokind IN ('f', 'p') THEN pg_catalog.pg_get_functiondef(p.oid) END) \
                         FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace \
                         WHERE p.oid = {target})"
                    )
                }
            }
        })
        .collect();
    format!(
        "json_build_object('objects', json_build_array({}), 'if_exists', {if_exists})",
        snaps.join(", ")
    )
}

/// The statements whose new name [`objects`] reads: `ALTER INDEX … RENAME TO` and `ALTER TABLE
/// … RENAME CONSTRAINT` (the model keeps neither name).
pub(crate) fn rename_tag(ddl: &Ddl) -> Option<&'static str> {
    match &ddl.kind {
        DdlKind::AlterIndex { action, .. } if action == "RENAME" => Some("ALTER INDEX RENAME"),
        DdlKind::AlterTable { ops, .. } if matches!(ops.as_slice(), [AlterOp::Other(o)] if o == "RENAME CONSTRAINT") => {
            Some("RENAME CONSTRAINT")
        }
        _ => None,
    }
}

/// The snapshot expression (a JSON object) for one statement, with its views and functions.
fn item(ddl: &Ddl, objs: &[Object]) -> String {
    if let Some(tag) = object_tag(ddl) {
        if objs.is_empty() {
            return "NULL".to_owned();
        }
        return objects_item(tag, objs, objs.iter().any(|o| o.if_exists));
    }
    let base = base_item(ddl);
    match (rename_tag(ddl), objs) {
        (Some(_), [from, to]) => format!(
            "(({base})::jsonb || jsonb_build_object('renamed', jsonb_build_array({}, {})))",
            quote::literal(&from.name.name),
            quote::literal(&to.name.name)
        ),
        _ => base,
    }
}

/// [`item`] for the statements whose snapshot is about one table or index.
fn base_item(ddl: &Ddl) -> String {
    match &ddl.kind {
        DdlKind::AlterIndex { name, .. } => {
            format!("json_build_object('table', {})", rel_json(&regclass(name)))
        }
        DdlKind::AlterTable { name, ops, .. } => {
            let oid = regclass(name);
            let cons: Vec<&str> = ops
                .iter()
                .filter_map(|op| match op {
                    AlterOp::DropConstraint { name } => Some(name.as_str()),
                    _ => None,
                })
                .collect();
            let cols: Vec<&str> = ops
                .iter()
                .filter_map(|op| match op {
                    AlterOp::SetDefault { column }
                    | AlterOp::DropDefault { column }
                    | AlterOp::SetNotNull { column }
                    | AlterOp::DropNotNull { column } => Some(column.as_str()),
                    _ => None,
                })
                .collect();
            let constraints = if cons.is_empty() {
                "NULL".to_owned()
            } else {
                format!(
                    "(SELECT json_object_agg(conname, json_build_object('def', \
                     pg_catalog.pg_get_constraintdef(oid), 'type', contype)) \
                     FROM pg_catalog.pg_constraint WHERE conrelid = {oid} AND conname IN ({}))",
                    literal_list(&cons)
                )
            };
            let columns = if cols.is_empty() {
                "NULL".to_owned()
            } else {
                format!(
                    "(SELECT json_object_agg(a.attname, json_build_object('default', \
                     pg_catalog.pg_get_expr(d.adbin, d.adrelid), 'not_null', a.attnotnull)) \
                     FROM pg_catalog.pg_attribute a LEFT JOIN pg_catalog.pg_attrdef d \
                     ON d.adrelid = a.attrelid AND d.adnum = a.attnum \
                     WHERE a.attrelid = {oid} AND a.attnum > 0 AND NOT a.attisdropped \
                     AND a.attname IN ({}))",
                    literal_list(&cols)
                )
            };
            let prior = if ops.iter().any(unnamed_constraint) {
                format!(
                    "(SELECT coalesce(json_agg(oid::int8), '[]') FROM pg_catalog.pg_constraint \
                     WHERE conrelid = {oid})"
                )
            } else {
                "NULL".to_owned()
            };
            format!(
                "json_build_object('table', {}, 'constraints', {constraints}, 'columns', {columns}, \
                 'prior_constraints', {prior})",
                rel_json(&oid)
            )
        }
        DdlKind::CreateIndex { name, table, .. } => {
            let oid = regclass(table);
            let exists = match name {
                // An index lands in its table's schema.
                Some(n) => format!(
                    "(SELECT to_regclass(pg_catalog.quote_ident(n.nspname) || '.' || {}) IS NOT NULL \
                     FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                     WHERE c.oid = {oid})",
                    quote::literal(&quote::ident(&n.name))
                ),
                None => "false".to_owned(),
            };
            let prior = match name {
                Some(_) => "NULL".to_owned(),
                None => format!(
                    "(SELECT coalesce(json_agg(indexrelid::int8), '[]') FROM pg_catalog.pg_index \
                     WHERE indrelid = {oid})"
                ),
            };
            format!(
                "json_build_object('table', {}, 'exists', coalesce({exists}, false), \
                 'prior_indexes', {prior})",
                rel_json(&oid)
            )
        }
        DdlKind::DropIndex { names, .. } => {
            let items: Vec<String> = names
                .iter()
                .map(|n| {
                    format!(
                        "(SELECT json_build_object('oid', c.oid::int8, 'schema', s.nspname, \
                         'name', c.relname, 'def', pg_catalog.pg_get_indexdef(c.oid), \
                         'table', i.indrelid::int8, 'constraint', EXISTS (SELECT 1 FROM \
                         pg_catalog.pg_constraint k WHERE k.conindid = c.oid)) \
                         FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace s ON s.oid = c.relnamespace \
                         JOIN pg_catalog.pg_index i ON i.indexrelid = c.oid WHERE c.oid = {})",
                        regclass(n)
                    )
                })
                .collect();
            let table = names
                .first()
                .map(|n| {
                    rel_json(&format!(
                        "(SELECT indrelid FROM pg_catalog.pg_index WHERE indexrelid = {})",
                        regclass(n)
                    ))
                })
                .unwrap_or_else(|| "NULL".to_owned());
            format!(
                "json_build_object('table', {table}, 'indexes', json_build_array({}))",
                items.join(", ")
            )
        }
        DdlKind::CreateTable { name, .. } => format!(
            "json_build_object('schema', {}, 'exists', {} IS NOT NULL)",
            schema_of(name),
            regclass(name)
        ),
        DdlKind::RenameView { name, .. } => {
            format!("json_build_object('table', {})", rel_json(&regclass(name)))
        }
        _ => "NULL".to_owned(),
    }
}

/// An `ADD` of a constraint without a name whose inverse is `DROP CONSTRAINT` (the server names
/// it; [`created_query`] reads the name after the statement ran).
pub(crate) fn unnamed_constraint(op: &AlterOp) -> bool {
    matches!(op, AlterOp::AddConstraint(c) if c.name.is_none()
        && c.index.is_none()
        && c.kind != crate::sql::statement::ConstraintKind::NotNull)
}

/// Whether [`created_query`] has something to read for a statement's snapshot.
pub fn needs_created(b: &Before) -> bool {
    b.table.is_some()
        && b.created.is_none()
        && (b.prior_indexes.is_some() || b.prior_constraints.is_some())
}

/// `'{1,2}'::oid[]`: OIDs the server sent, printed back as numbers.
fn oid_array(oids: &[i64]) -> String {
    let list: Vec<String> = oids.iter().map(i64::to_string).collect();
    format!("'{{{}}}'::pg_catalog.oid[]", list.join(","))
}

/// The one read-only query, run right after the statements ran, reading what each unnamed
/// `CREATE INDEX` / `ADD CONSTRAINT` created: the indexes / constraints of its table whose OIDs
/// were not there before (a JSON array, one element per snapshot, NULL where there is nothing
/// to read), or `None` when no snapshot needs it. Decided on OIDs, never on names or on which
/// OID is newest.
pub fn created_query(befores: &[&Before]) -> Option<String> {
    if !befores.iter().any(|b| needs_created(b)) {
        return None;
    }
    let items: Vec<String> = befores
        .iter()
        .map(|b| match (&b.table, needs_created(b)) {
            (Some(t), true) => {
                let mut parts = Vec::new();
                if let Some(prior) = &b.prior_indexes {
                    parts.push(format!(
                        "(SELECT coalesce(json_agg(json_build_object('schema', n.nspname, 'name', c.relname, \
                         'kind', 'i') ORDER BY c.oid), '[]') FROM pg_catalog.pg_index i \
                         JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid \
                         JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                         WHERE i.indrelid = {} AND NOT i.indexrelid = ANY ({}))::jsonb",
                        t.oid,
                        oid_array(prior)
                    ));
                }
                if let Some(prior) = &b.prior_constraints {
                    parts.push(format!(
                        "(SELECT coalesce(json_agg(json_build_object('schema', n.nspname, 'name', k.conname, \
                         'kind', k.contype::text) ORDER BY k.oid), '[]') FROM pg_catalog.pg_constraint k \
                         JOIN pg_catalog.pg_namespace n ON n.oid = k.connamespace \
                         WHERE k.conrelid = {} AND k.conparentid = 0 AND NOT k.oid = ANY ({}))::jsonb",
                        t.oid,
                        oid_array(prior)
                    ));
                }
                parts.join(" || ")
            }
            _ => "NULL".to_owned(),
        })
        .collect();
    Some(format!("SELECT json_build_array({})", items.join(", ")))
}

/// Reads the answer to [`created_query`]: one element per snapshot (`None` where it was NULL
/// or unreadable).
pub fn parse_created(json: &str) -> Vec<Option<Vec<Created>>> {
    let Ok(values) = serde_json::from_str::<Vec<serde_json::Value>>(json) else {
        return Vec::new();
    };
    values
        .into_iter()
        .map(|v| serde_json::from_value(v).ok())
        .collect()
}

/// Whether a statement's inverse needs anything from the catalog.
fn needs_snapshot(ddl: &Ddl) -> bool {
    object_tag(ddl).is_some()
        || rename_tag(ddl).is_some()
        || matches!(
            ddl.kind,
            DdlKind::AlterTable { .. }
                | DdlKind::CreateIndex { .. }
                | DdlKind::DropIndex { .. }
                | DdlKind::CreateTable { .. }
                | DdlKind::RenameView { .. }
        )
}

/// The one query reading the `Before` snapshots of `ddls` (a JSON array in their order), or
/// `None` when none of them needs one. At most `max` statements are captured; the rest get an
/// empty snapshot (their inverses then say what could not be read).
pub fn query<'a>(
    ddls: impl IntoIterator<Item = &'a (Ddl, Vec<Object>)>,
    max: usize,
) -> Option<String> {
    let ddls: Vec<&(Ddl, Vec<Object>)> = ddls.into_iter().take(max).collect();
    if !ddls.iter().any(|(d, _)| needs_snapshot(d)) {
        return None;
    }
    let items: Vec<String> = ddls.iter().map(|(d, o)| item(d, o)).collect();
    Some(format!("SELECT json_build_array({})", items.join(", ")))
}

/// The relation whose fingerprint identifies what `ddl` changed, as a SQL expression of type
/// `oid` evaluated right after it ran: the OID the snapshot read, or — for a table it created —
/// `to_regclass` of its name in the schema the snapshot read.
pub fn object_sql(ddl: &Ddl, before: &Before) -> Option<String> {
    match &ddl.kind {
        DdlKind::CreateTable {
            name,
            temporary: false,
            ..
        } if !before.exists => {
            let schema = before.schema.as_ref()?;
            Some(format!(
                "to_regclass({})",
                quote::literal(&format!(
                    "{}.{}",
                    quote::ident(schema),
                    quote::ident(&name.name)
                ))
            ))
        }
        DdlKind::DropIndex { .. } => before
            .indexes
            .iter()
            .flatten()
            .next()
            .map(|i| i.table.to_string()),
        _ => before.table.as_ref().map(|t| t.oid.to_string()),
    }
}

/// Reads the answer to [`query`]: one snapshot per statement (an element that is NULL or
/// unreadable is an empty snapshot).
pub fn parse(json: &str) -> Vec<Before> {
    let Ok(values) = serde_json::from_str::<Vec<serde_json::Value>>(json) else {
        return Vec::new();
    };
    values
        .into_iter()
        .map(|v| serde_json::from_value(v).unwrap_or_default())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_without_catalog_needs_ask_nothing() {
        let d = Ddl {
            kind: DdlKind::DropTable {
                names: vec![Name::bare("t")],
                cascade: false,
            },
            understood: crate::sql::statement::Understood::Parsed,
        };
        assert_eq!(query([&(d, vec![])], 10), None);
    }

    #[test]
    fn names_are_quoted_as_literals() {
        let d = Ddl {
            kind: DdlKind::CreateTable {
                name: Name::new(Some("s'x"), "t\"y"),
                temporary: false,
                partition_of: None,
                references: vec![],
                if_not_exists: true,
                columns: vec![],
            },
            understood: crate::sql::statement::Understood::Parsed,
        };
        let q = query([&(d, vec![])], 10).unwrap();
        assert!(q.contains(r#"to_regclass('"s''x"."t""y"')"#), "{q}");
        assert!(q.contains("'s''x'"), "{q}");
    }

    fn objs(sql: &str) -> Vec<Object> {
        let lex = crate::sql::lexer::LexOptions::default();
        let p = crate::analysis::prepare(sql.as_bytes(), lex, 10);
        let c = p.candidates.first().expect("DDL");
        let span = p.spans[c.index];
        objects(sql.as_bytes(), span.start, span.end, lex, &c.ddl)
    }

    #[test]
    fn reads_view_and_function_names_from_the_tokens() {
        let o = objs("CREATE OR REPLACE VIEW s.\"V\" AS SELECT 1");
        assert_eq!(
            o,
            [Object {
                name: Name::new(Some("s"), "V"),
                args: None,
                if_exists: false
            }]
        );
        let o = objs("DROP VIEW IF EXISTS a, b.c RESTRICT");
        assert_eq!(o.len(), 2);
        assert_eq!(o[1].name, Name::new(Some("b"), "c"));
        assert!(o[1].if_exists);
        let o = objs(
            "CREATE FUNCTION f(a int DEFAULT 1, b numeric(10, 2) = 2.5, OUT c text) RETURNS record LANGUAGE sql AS 'SELECT 1, 2'",
        );
        assert_eq!(
            o[0].args.as_deref(),
            Some("(a int, b numeric(10, 2), OUT c text)")
        );
        let o = objs("DROP FUNCTION f(int), g");
        assert_eq!(o[0].args.as_deref(), Some("(int)"));
        assert_eq!(
            o[1],
            Object {
                name: Name::bare("g"),
                args: None,
                if_exists: false
            }
        );
    }

    #[test]
    fn reads_renamed_names_from_the_tokens() {
        let r = objs("ALTER TABLE t RENAME CONSTRAINT \"A\" TO b");
        assert_eq!(
            (r[0].name.name.as_str(), r[1].name.name.as_str()),
            ("A", "b")
        );
        let r = objs("ALTER INDEX IF EXISTS s.i RENAME TO j");
        assert_eq!(
            (r[0].name.name.as_str(), r[1].name.name.as_str()),
            ("", "j")
        );
    }

    #[test]
    fn created_is_read_by_oid_for_unnamed_objects_only() {
        let b = Before {
            table: Some(Rel {
                oid: 42,
                schema: "public".into(),
                name: "t".into(),
            }),
            prior_indexes: Some(vec![7, 9]),
            ..Default::default()
        };
        let q = created_query(&[&Before::default(), &b]).unwrap();
        assert!(q.starts_with("SELECT json_build_array(NULL, "), "{q}");
        assert!(
            q.contains("i.indrelid = 42 AND NOT i.indexrelid = ANY ('{7,9}'::pg_catalog.oid[])"),
            "{q}"
        );
        assert_eq!(created_query(&[&Before::default()]), None);
        let c = parse_created(r#"[null, [{"schema": "public", "name": "t_x_idx", "kind": "i"}]]"#);
        assert_eq!(c[0], None);
        assert_eq!(c[1].as_ref().unwrap()[0].name, "t_x_idx");
    }

    #[test]
    fn parses_nulls_and_objects() {
        let b = parse(
            r#"[null, {"table": {"oid": 5, "schema": "public", "name": "t"}, "constraints": null,
            "columns": {"a": {"default": "0", "not_null": true}}}]"#,
        );
        assert_eq!(b.len(), 2);
        assert_eq!(b[0], Before::default());
        assert_eq!(b[1].table.as_ref().unwrap().oid, 5);
        assert_eq!(b[1].columns["a"].default.as_deref(), Some("0"));
    }
}

/// The DDL statements of a message as understood, each with its views and functions.
pub type Statements = Vec<(Ddl, Vec<Object>)>;

/// A view or function a statement creates or drops, read from the statement's tokens (the
/// statement model keeps no name for them): its name, and for a function its parameter list as
/// written, without defaults (what `DROP FUNCTION` and `to_regprocedure` take).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object {
    pub name: Name,
    pub args: Option<String>,
    /// The statement said `IF EXISTS`.
    pub if_exists: bool,
}

/// The kind of statement whose objects [`objects`] reads: `CREATE VIEW` (also `OR REPLACE`;
/// not a temporary one, gone with its session), `DROP VIEW`, `CREATE FUNCTION`, `DROP FUNCTION`.
pub(crate) fn object_tag(ddl: &Ddl) -> Option<&'static str> {
    match &ddl.kind {
        DdlKind::Other { tag } => match tag.as_str() {
            "CREATE VIEW" | "CREATE OR REPLACE VIEW" => Some("CREATE VIEW"),
            "DROP VIEW" => Some("DROP VIEW"),
            "DROP FUNCTION" => Some("DROP FUNCTION"),
            _ => None,
        },
        DdlKind::CreateFunction { .. } => Some("CREATE FUNCTION"),
        _ => None,
    }
}

/// The objects of a `CREATE [OR REPLACE] VIEW`, `DROP VIEW`, `CREATE [OR REPLACE] FUNCTION` or
/// `DROP FUNCTION` statement at `sql[start..end]`; empty for other statements, or when the text
/// is not read with certainty (its inverse then says it could not be read).
pub fn objects(
    sql: &[u8],
    start: usize,
    end: usize,
    lex: crate::sql::lexer::LexOptions,
    ddl: &Ddl,
) -> Vec<Object> {
    if rename_tag(ddl).is_some() {
        return renamed_names(sql, start, end, lex);
    }
    let Some(tag) = object_tag(ddl) else {
        return Vec::new();
    };
    let Ok(s) = crate::sql::reader::Stmt::new(sql, start, end, lex) else {
        return Vec::new();
    };
    let function = tag.ends_with("FUNCTION");
    // Skip to the name: past the keywords before it.
    let mut i = 1;
    let mut if_exists = false;
    let skip = [
        "or",
        "replace",
        "temp",
        "temporary",
        "recursive",
        "view",
        "function",
        "if",
        "exists",
    ];
    while let Some(w) = s.lower(i).filter(|w| skip.contains(&w.as_str())) {
        if_exists |= w == "exists";
        i += 1;
    }
    let mut out = Vec::new();
    loop {
        let Some((name, after)) = s.relation(i) else {
            return Vec::new();
        };
        let mut next = after;
        let args = if function && s.kind(after) == Some(crate::sql::lexer::TokenKind::LParen) {
            let Some(close) = s.close_paren(after) else {
                return Vec::new();
            };
            let Some(list) = parameters(&s, after, close) else {
                return Vec::new();
            };
            next = close + 1;
            Some(list)
        } else {
            None
        };
        out.push(Object {
            name,
            args,
            if_exists,
        });
        // DROP takes a list; CREATE one name.
        if tag.starts_with("DROP") && s.kind(next) == Some(crate::sql::lexer::TokenKind::Comma) {
            i = next + 1;
            continue;
        }
        return out;
    }
}

/// `[from, to]` of `… RENAME CONSTRAINT from TO to`, or `[(empty), to]` of `… RENAME TO to`.
fn renamed_names(
    sql: &[u8],
    start: usize,
    end: usize,
    lex: crate::sql::lexer::LexOptions,
) -> Vec<Object> {
    let Ok(s) = crate::sql::reader::Stmt::new(sql, start, end, lex) else {
        return Vec::new();
    };
    let object = |name: String| Object {
        name: Name::bare(&name),
        args: None,
        if_exists: false,
    };
    let Some(k) = (0..s.last()).find(|&k| s.word(k, "rename")) else {
        return Vec::new();
    };
    let pair = if s.word(k + 1, "constraint") && s.word(k + 3, "to") && k + 4 == s.last() {
        s.ident(k + 2).zip(s.ident(k + 4))
    } else if s.word(k + 1, "to") && k + 2 == s.last() {
        s.ident(k + 2).map(|to| (String::new(), to))
    } else {
        None
    };
    match pair {
        Some((from, to)) => vec![object(from), object(to)],
        None => Vec::new(),
    }
}

/// `( … )` between `open` and `close`: each parameter up to its `DEFAULT` / `=`, joined again.
fn parameters(s: &crate::sql::reader::Stmt<'_>, open: usize, close: usize) -> Option<String> {
    use crate::sql::lexer::TokenKind;
    let mut params = Vec::new();
    let mut from = open + 1;
    let mut depth = 0usize;
    let mut cut: Option<usize> = None;
    let mut i = open + 1;
    while i <= close {
        let at_end = i == close;
        match s.kind(i) {
            Some(TokenKind::LParen) => depth += 1,
            Some(TokenKind::RParen) if !at_end => depth = depth.saturating_sub(1),
            _ => {}
        }
        if depth == 0 && cut.is_none() && (s.word(i, "default") || s.is_op(i, "=")) {
            cut = Some(i);
        }
        if at_end || (depth == 0 && s.kind(i) == Some(TokenKind::Comma)) {
            let last = cut.unwrap_or(i).checked_sub(1)?;
            if last >= from {
                params.push(s.text(from, last).ok()?);
            }
            from = i + 1;
            cut = None;
        }
        i += 1;
    }
    Some(format!("({})", params.join(", ")))
}

//! The inverse of one DDL statement: pure, from the statement as understood (what actually ran:
//! a rewrite's text; for a recipe, the original statement, whose steps reduce to it) and the
//! catalog [`Before`] snapshot read just before it ran. Every identifier comes from the
//! snapshot (resolved by OID by the server) or from the statement's folded names, and is
//! quoted with `sql::quote`.

use crate::sql::quote;
use crate::sql::statement::{AlterOp, ConstraintKind, Ddl, DdlKind, Name};

use super::capture::{Before, Rel, object_tag};

/// What undoes a statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inverse {
    /// These statements, in order (none: the statement changed nothing that needs undoing).
    Sql(Vec<String>),
    /// It cannot be undone, and why.
    Irreversible(String),
}

impl Inverse {
    fn irreversible(why: impl Into<String>) -> Inverse {
        Inverse::Irreversible(why.into())
    }

    /// The SQL, when it can be undone.
    pub fn sql(&self) -> Option<&[String]> {
        match self {
            Inverse::Sql(s) => Some(s),
            Inverse::Irreversible(_) => None,
        }
    }

    /// Why not, when it cannot.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Inverse::Sql(_) => None,
            Inverse::Irreversible(r) => Some(r),
        }
    }
}

fn qualified(schema: &str, name: &str) -> String {
    format!("{}.{}", quote::ident(schema), quote::ident(name))
}

fn rel(r: &Rel) -> String {
    qualified(&r.schema, &r.name)
}

fn not_captured(what: &str) -> Inverse {
    Inverse::irreversible(format!(
        "{what} did not exist or could not be read before the statement ran, so its inverse is unknown"
    ))
}

/// `CREATE [UNIQUE] INDEX …` as `pg_get_indexdef` prints it, built CONCURRENTLY.
fn concurrently(def: &str) -> Option<String> {
    for head in ["CREATE UNIQUE INDEX ", "CREATE INDEX "] {
        if let Some(rest) = def.strip_prefix(head) {
            return Some(format!("{head}CONCURRENTLY {rest}"));
        }
    }
    None
}

/// The inverse of `ddl` given what the catalog said before it ran.
pub fn inverse(ddl: &Ddl, before: &Before) -> Inverse {
    match &ddl.kind {
        DdlKind::CreateIndex {
            name, table, only, ..
        } => {
            if before.exists {
                // IF NOT EXISTS on an index that was already there: nothing was created.
                return Inverse::Sql(Vec::new());
            }
            let Some(t) = &before.table else {
                return not_captured(&format!("table {table}"));
            };
            let drop = if *only {
                // A partitioned parent's index cannot be dropped concurrently.
                "DROP INDEX"
            } else {
                "DROP INDEX CONCURRENTLY"
            };
            let index = match name {
                Some(name) => qualified(&t.schema, &name.name),
                // The name the server gave it, read by OID after the statement ran.
                None => match before.created.as_deref() {
                    Some([one]) if one.kind == "i" => qualified(&one.schema, &one.name),
                    Some(new) => {
                        return Inverse::irreversible(format!(
                            "the index was created without a name and {} new indexes were on {} after it ran ({}), so ddlgate cannot tell which one it is; name indexes in migrations",
                            new.len(),
                            rel(t),
                            names(new)
                        ));
                    }
                    None => return unnamed("index"),
                },
            };
            Inverse::Sql(vec![format!("{drop} {index}")])
        }
        DdlKind::DropIndex {
            names, if_exists, ..
        } => {
            let mut out = Vec::new();
            for (i, n) in names.iter().enumerate() {
                match before.indexes.get(i) {
                    Some(Some(ix)) if ix.constraint => {
                        return Inverse::irreversible(format!(
                            "index {n} belonged to a constraint; re-creating the index would not bring the constraint back"
                        ));
                    }
                    Some(Some(ix)) => match concurrently(&ix.def) {
                        Some(sql) => out.push(sql),
                        None => {
                            return Inverse::irreversible(format!(
                                "the saved definition of index {n} is not a CREATE INDEX statement"
                            ));
                        }
                    },
                    // IF EXISTS on an index that was not there: nothing was dropped.
                    Some(None) if *if_exists => {}
                    Some(None) => return not_captured(&format!("index {n}")),
                    None => return not_captured(&format!("index {n}")),
                }
            }
            Inverse::Sql(out)
        }
        DdlKind::CreateTable {
            name, temporary, ..
        } => {
            if *temporary {
                return Inverse::Sql(Vec::new());
            }
            if before.exists {
                return Inverse::Sql(Vec::new());
            }
            let Some(schema) = &before.schema else {
                return not_captured(&format!("the schema of {name}"));
            };
            Inverse::Sql(vec![format!(
                "DROP TABLE {}",
                qualified(schema, &name.name)
            )])
        }
        DdlKind::AlterTable { name, ops, .. } => alter_table(name, ops, before),
        DdlKind::RenameView {
            name,
            materialized,
            column,
            to,
        } => {
            let Some(t) = &before.table else {
                return not_captured(&format!("relation {name}"));
            };
            let kw = if *materialized {
                "ALTER MATERIALIZED VIEW"
            } else {
                "ALTER VIEW"
            };
            Inverse::Sql(vec![match column {
                Some(c) => format!(
                    "{kw} {} RENAME COLUMN {} TO {}",
                    rel(t),
                    quote::ident(to),
                    quote::ident(c)
                ),
                None => format!(
                    "{kw} {} RENAME TO {}",
                    qualified(&t.schema, to),
                    quote::ident(&t.name)
                ),
            }])
        }
        DdlKind::AlterIndex { name, action } if action == "RENAME" => {
            let (Some(t), Some(to)) = (&before.table, renamed_to(before)) else {
                return not_captured(&format!("index {name}"));
            };
            Inverse::Sql(vec![format!(
                "ALTER INDEX {} RENAME TO {}",
                qualified(&t.schema, to),
                quote::ident(&t.name)
            )])
        }
        DdlKind::DropTable { .. } => Inverse::irreversible("DROP TABLE destroyed the table's data"),
        DdlKind::Truncate { .. } => Inverse::irreversible("TRUNCATE destroyed the table's rows"),
        DdlKind::AlterTypeAddValue { .. } => Inverse::irreversible(
            "PostgreSQL cannot remove a value from an enum type (rows may already use it)",
        ),
        DdlKind::DropCascade { tag, .. } => Inverse::irreversible(format!(
            "{tag} … CASCADE dropped dependent objects whose data and definitions were not saved"
        )),
        DdlKind::DropOwned => {
            Inverse::irreversible("DROP OWNED destroyed every object the roles owned")
        }
        DdlKind::DropDatabase => Inverse::irreversible("DROP DATABASE destroyed the database"),
        // Nothing in the schema changes.
        DdlKind::Vacuum { .. }
        | DdlKind::Reindex { .. }
        | DdlKind::Lock { .. }
        | DdlKind::Cluster { .. }
        | DdlKind::RefreshMaterializedView { .. } => Inverse::Sql(Vec::new()),
        DdlKind::Other { .. } if object_tag(ddl) == Some("CREATE VIEW") => {
            let Some(Some(o)) = before.objects.first() else {
                return not_captured("the view");
            };
            let name = qualified(&o.schema, &o.name);
            match (&o.oid, &o.def) {
                (None, _) => Inverse::Sql(vec![format!("DROP VIEW {name}")]),
                // OR REPLACE of an existing view: its previous definition. Dropped first:
                // CREATE OR REPLACE cannot take back columns the new definition added (a view
                // that others depend on then fails to drop, with the server's reason).
                (Some(_), Some(def)) => Inverse::Sql(vec![
                    format!("DROP VIEW {name}"),
                    format!(
                        "CREATE VIEW {name}{} AS {}",
                        view_options(o.options.as_deref()),
                        def.trim_end().trim_end_matches(';')
                    ),
                ]),
                (Some(_), None) => not_captured(&format!("view {name}")),
            }
        }
        DdlKind::Other { .. } if object_tag(ddl) == Some("DROP VIEW") => {
            if before.objects.is_empty()
                || (!before.if_exists && before.objects.iter().any(Option::is_none))
            {
                return not_captured("the view");
            }
            let mut out = Vec::new();
            for o in before.objects.iter().flatten() {
                let Some(def) = &o.def else {
                    return not_captured(&format!("view {}", o.name));
                };
                out.push(format!(
                    "CREATE VIEW {}{} AS {}",
                    qualified(&o.schema, &o.name),
                    view_options(o.options.as_deref()),
                    def.trim_end().trim_end_matches(';')
                ));
            }
            Inverse::Sql(out)
        }
        DdlKind::CreateFunction { .. } => {
            let Some(Some(o)) = before.objects.first() else {
                return not_captured("the function");
            };
            if o.name_taken {
                return Inverse::irreversible(format!(
                    "not supported: a function named {} already existed in schema {} (replaced or overloaded), and ddlgate does not tell which one the statement changed",
                    o.name, o.schema
                ));
            }
            Inverse::Sql(vec![format!(
                "DROP FUNCTION {}{}",
                qualified(&o.schema, &o.name),
                o.args.as_deref().unwrap_or("")
            )])
        }
        DdlKind::Other { .. } if object_tag(ddl) == Some("DROP FUNCTION") => {
            if before.objects.is_empty()
                || (!before.if_exists && before.objects.iter().any(Option::is_none))
            {
                return not_captured("the function");
            }
            let mut out = Vec::new();
            for o in before.objects.iter().flatten() {
                let Some(def) = &o.def else {
                    return Inverse::irreversible(format!(
                        "not supported: {} is not a plain function or procedure whose definition PostgreSQL prints",
                        o.name
                    ));
                };
                out.push(def.trim_end().to_owned());
            }
            Inverse::Sql(out)
        }
        other => Inverse::irreversible(format!(
            "not supported: ddlgate does not compute the inverse of {}",
            kind_name(other)
        )),
    }
}

/// ` WITH (…)` for a view's saved `reloptions` (each `name=value`, as the catalog holds them).
fn view_options(options: Option<&[String]>) -> String {
    match options {
        Some(o) if !o.is_empty() => {
            let parts: Vec<String> = o
                .iter()
                .filter_map(|kv| {
                    let (k, v) = kv.split_once('=')?;
                    Some(format!("{}={}", quote::ident(k), quote::literal(v)))
                })
                .collect();
            format!(" WITH ({})", parts.join(", "))
        }
        _ => String::new(),
    }
}

/// The new name of a rename the snapshot read from the statement.
fn renamed_to(before: &Before) -> Option<&String> {
    before.renamed.as_ref().and_then(|r| r.get(1))
}

/// A readable name of a statement kind, for "not supported" reasons.
fn kind_name(kind: &DdlKind) -> String {
    match kind {
        DdlKind::Other { tag } => tag.clone(),
        DdlKind::RenameObject { tag, .. } => format!("{tag} … RENAME"),
        k => k.label().replace('_', " ").to_uppercase(),
    }
}

/// ALTER TABLE: the inverse of each action, in reverse order; irreversible when one is.
fn alter_table(name: &Name, ops: &[AlterOp], before: &Before) -> Inverse {
    let Some(t) = &before.table else {
        return not_captured(&format!("table {name}"));
    };
    let table = rel(t);
    let alter = |what: String| format!("ALTER TABLE {table} {what}");
    let mut unnamed_names = created_constraints(ops, before);
    let mut out = Vec::new();
    for op in ops.iter().rev() {
        let sql = match op {
            AlterOp::AddColumn(c) => alter(format!("DROP COLUMN {}", quote::ident(&c.name))),
            AlterOp::DropColumn { name } => {
                return Inverse::irreversible(format!(
                    "DROP COLUMN {name} destroyed the column's data"
                ));
            }
            AlterOp::RenameColumn { from, to } => alter(format!(
                "RENAME COLUMN {} TO {}",
                quote::ident(to),
                quote::ident(from)
            )),
            AlterOp::RenameTable { to } => format!(
                "ALTER TABLE {} RENAME TO {}",
                qualified(&t.schema, to),
                quote::ident(&t.name)
            ),
            AlterOp::SetNotNull { column } | AlterOp::DropNotNull { column } => {
                let set = matches!(op, AlterOp::SetNotNull { .. });
                let Some(c) = before.columns.get(column) else {
                    return not_captured(&format!("column {column}"));
                };
                if c.not_null == set {
                    // Already as the statement left it.
                    continue;
                }
                alter(format!(
                    "ALTER COLUMN {} {} NOT NULL",
                    quote::ident(column),
                    if set { "DROP" } else { "SET" }
                ))
            }
            AlterOp::SetDefault { column } | AlterOp::DropDefault { column } => {
                let Some(c) = before.columns.get(column) else {
                    return not_captured(&format!("column {column}"));
                };
                match &c.default {
                    Some(expr) => alter(format!(
                        "ALTER COLUMN {} SET DEFAULT {expr}",
                        quote::ident(column)
                    )),
                    None => alter(format!(
                        "ALTER COLUMN {} DROP DEFAULT",
                        quote::ident(column)
                    )),
                }
            }
            AlterOp::AddConstraint(c) => {
                if c.index.is_some() {
                    return Inverse::irreversible(
                        "not supported: dropping a constraint added USING INDEX would drop the index it took over",
                    );
                }
                if c.kind == ConstraintKind::NotNull {
                    return Inverse::irreversible(
                        "not supported: ddlgate does not compute the inverse of ADD CONSTRAINT … NOT NULL",
                    );
                }
                let n = match &c.name {
                    Some(n) => n.clone(),
                    None => match unnamed_names.as_mut() {
                        Some(Ok(by_kind)) => {
                            match by_kind.get_mut(contype(&c.kind)).and_then(Vec::pop) {
                                Some(n) => n,
                                None => return unnamed("constraint"),
                            }
                        }
                        Some(Err(why)) => return Inverse::irreversible(why.clone()),
                        None => return unnamed("constraint"),
                    },
                };
                alter(format!("DROP CONSTRAINT {}", quote::ident(&n)))
            }
            AlterOp::DropConstraint { name } => {
                let Some(c) = before.constraints.get(name) else {
                    return not_captured(&format!("constraint {name}"));
                };
                let con = quote::ident(name);
                match c.kind.as_str() {
                    // Re-added without a long lock, then validated under SHARE UPDATE EXCLUSIVE.
                    "f" | "c" if !c.def.ends_with("NOT VALID") => {
                        out.push(alter(format!("ADD CONSTRAINT {con} {} NOT VALID", c.def)));
                        alter(format!("VALIDATE CONSTRAINT {con}"))
                    }
                    "f" | "c" | "u" | "p" | "x" => alter(format!("ADD CONSTRAINT {con} {}", c.def)),
                    _ => {
                        return Inverse::irreversible(format!(
                            "not supported: re-adding constraint {name} of type {}",
                            c.kind
                        ));
                    }
                }
            }
            AlterOp::Other(o) if o == "RENAME CONSTRAINT" => {
                let (Some(from), Some(to)) = (
                    before.renamed.as_ref().and_then(|r| r.first()),
                    renamed_to(before),
                ) else {
                    return not_captured("the renamed constraint");
                };
                alter(format!(
                    "RENAME CONSTRAINT {} TO {}",
                    quote::ident(to),
                    quote::ident(from)
                ))
            }
            // Validation checks rows; it changes no definition to take back.
            AlterOp::ValidateConstraint { .. } => continue,
            other => {
                return Inverse::irreversible(format!(
                    "not supported: ddlgate does not compute the inverse of ALTER TABLE … {}",
                    op_name(other)
                ));
            }
        };
        out.push(sql);
    }
    Inverse::Sql(out)
}

/// Why an object created without a name has no inverse: its name was not read after it ran.
fn unnamed(what: &str) -> Inverse {
    Inverse::irreversible(format!(
        "the {what} was created without a name, and the name the server gave it was not read after the statement ran (it ran outside the DDL lane, or the read failed); name {what}s in migrations"
    ))
}

fn names(created: &[super::capture::Created]) -> String {
    if created.is_empty() {
        return "none".to_owned();
    }
    created
        .iter()
        .map(|c| qualified(&c.schema, &c.name))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `pg_constraint.contype` of a constraint kind.
fn contype(kind: &ConstraintKind) -> &'static str {
    match kind {
        ConstraintKind::ForeignKey { .. } => "f",
        ConstraintKind::Check => "c",
        ConstraintKind::Unique { .. } => "u",
        ConstraintKind::PrimaryKey { .. } => "p",
        ConstraintKind::Exclusion => "x",
        ConstraintKind::NotNull => "n",
    }
}

/// The names the server gave the unnamed constraints an ALTER TABLE added, by `contype`: the
/// table's constraints of that type that were new after it ran, less those the statement
/// named. `None` when not read; an error when the new ones do not match the statement's
/// (another session added one meanwhile): then which is which is unknown.
fn created_constraints(
    ops: &[AlterOp],
    before: &Before,
) -> Option<Result<std::collections::HashMap<&'static str, Vec<String>>, String>> {
    let wanted: Vec<&'static str> = ops
        .iter()
        .filter_map(|op| match op {
            AlterOp::AddConstraint(c) if super::capture::unnamed_constraint(op) => {
                Some(contype(&c.kind))
            }
            _ => None,
        })
        .collect();
    if wanted.is_empty() {
        return None;
    }
    let created = before.created.as_deref()?;
    let named: Vec<&str> = ops
        .iter()
        .filter_map(|op| match op {
            AlterOp::AddConstraint(c) => c.name.as_deref(),
            _ => None,
        })
        .collect();
    let mut by_kind: std::collections::HashMap<&'static str, Vec<String>> =
        std::collections::HashMap::new();
    for kind in ["f", "c", "u", "p", "x"] {
        let expected = wanted.iter().filter(|k| **k == kind).count();
        let new: Vec<String> = created
            .iter()
            .filter(|c| c.kind == kind && !named.contains(&c.name.as_str()))
            .map(|c| c.name.clone())
            .collect();
        if new.len() != expected {
            return Some(Err(format!(
                "the statement added {expected} unnamed constraint(s) of type {kind}, but {} new ones were on the table after it ran ({}), so ddlgate cannot tell which; name constraints in migrations",
                new.len(),
                names(created)
            )));
        }
        by_kind.insert(kind, new);
    }
    Some(Ok(by_kind))
}

fn op_name(op: &AlterOp) -> String {
    match op {
        AlterOp::Other(s) => s.clone(),
        AlterOp::AlterColumnType { .. } => "ALTER COLUMN … TYPE".to_owned(),
        AlterOp::SetSchema => "SET SCHEMA".to_owned(),
        AlterOp::SetTablespace => "SET TABLESPACE".to_owned(),
        AlterOp::SetLogged => "SET LOGGED".to_owned(),
        AlterOp::SetUnlogged => "SET UNLOGGED".to_owned(),
        AlterOp::SetAccessMethod => "SET ACCESS METHOD".to_owned(),
        AlterOp::AttachPartition { .. } => "ATTACH PARTITION".to_owned(),
        AlterOp::DetachPartition { .. } => "DETACH PARTITION".to_owned(),
        AlterOp::EnableTrigger => "ENABLE TRIGGER".to_owned(),
        AlterOp::DisableTrigger => "DISABLE TRIGGER".to_owned(),
        AlterOp::RowLevelSecurity => "ROW LEVEL SECURITY".to_owned(),
        _ => format!("{op:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::lexer::LexOptions;
    use std::collections::HashMap;

    fn ddl(sql: &str) -> Ddl {
        let p = crate::analysis::prepare(sql.as_bytes(), LexOptions::default(), 100);
        p.candidates.first().expect("a DDL statement").ddl.clone()
    }

    fn t() -> Option<Rel> {
        Some(Rel {
            oid: 1,
            schema: "public".into(),
            name: "t".into(),
        })
    }

    fn sql(i: Inverse) -> Vec<String> {
        match i {
            Inverse::Sql(s) => s,
            Inverse::Irreversible(r) => panic!("irreversible: {r}"),
        }
    }

    #[test]
    fn create_index_drops_it_concurrently_in_the_tables_schema() {
        let b = Before {
            table: t(),
            ..Default::default()
        };
        assert_eq!(
            sql(inverse(&ddl("CREATE INDEX CONCURRENTLY ix ON t (a)"), &b)),
            [r#"DROP INDEX CONCURRENTLY "public"."ix""#]
        );
        let existed = Before {
            exists: true,
            ..b.clone()
        };
        assert_eq!(
            sql(inverse(
                &ddl("CREATE INDEX IF NOT EXISTS ix ON t (a)"),
                &existed
            )),
            Vec::<String>::new()
        );
        assert!(
            inverse(&ddl("CREATE INDEX ON t (a)"), &b)
                .reason()
                .unwrap()
                .contains("without a name")
        );
    }

    fn made(kind: &str, name: &str) -> super::super::capture::Created {
        super::super::capture::Created {
            schema: "public".into(),
            name: name.into(),
            kind: kind.into(),
        }
    }

    #[test]
    fn unnamed_index_and_constraints_use_the_names_read_after_the_statement() {
        let with = |created: Vec<super::super::capture::Created>| Before {
            table: t(),
            prior_indexes: Some(vec![]),
            prior_constraints: Some(vec![]),
            created: Some(created),
            ..Default::default()
        };
        assert_eq!(
            sql(inverse(
                &ddl("CREATE INDEX ON t (a)"),
                &with(vec![made("i", "t_a_idx")])
            )),
            [r#"DROP INDEX CONCURRENTLY "public"."t_a_idx""#]
        );
        // Two new indexes (another session's meanwhile): which one is unknown.
        let two = inverse(
            &ddl("CREATE INDEX ON t (a)"),
            &with(vec![made("i", "t_a_idx"), made("i", "t_a_idx1")]),
        );
        assert!(two.reason().unwrap().contains("cannot tell"), "{two:?}");
        // Each unnamed constraint by its type; a named one in the same statement is not taken.
        assert_eq!(
            sql(inverse(
                &ddl(
                    "ALTER TABLE t ADD CHECK (a > 0), ADD CONSTRAINT k CHECK (a < 9), ADD FOREIGN KEY (a) REFERENCES p (id)"
                ),
                &with(vec![
                    made("c", "t_a_check"),
                    made("c", "k"),
                    made("f", "t_a_fkey")
                ])
            )),
            [
                r#"ALTER TABLE "public"."t" DROP CONSTRAINT "t_a_fkey""#,
                r#"ALTER TABLE "public"."t" DROP CONSTRAINT "k""#,
                r#"ALTER TABLE "public"."t" DROP CONSTRAINT "t_a_check""#,
            ]
        );
        let extra = inverse(
            &ddl("ALTER TABLE t ADD UNIQUE (a)"),
            &with(vec![made("u", "t_a_key"), made("c", "other")]),
        );
        assert!(extra.reason().unwrap().contains("cannot tell"), "{extra:?}");
        // Not read (forwarded outside the lane): irreversible, saying why.
        let b = Before {
            table: t(),
            ..Default::default()
        };
        let r = inverse(&ddl("ALTER TABLE t ADD UNIQUE (a)"), &b);
        assert!(r.reason().unwrap().contains("without a name"), "{r:?}");
    }

    #[test]
    fn drop_index_rebuilds_the_saved_definition_concurrently() {
        let b = Before {
            indexes: vec![Some(super::super::capture::IndexSnap {
                def: "CREATE UNIQUE INDEX ix ON public.t USING btree (a)".into(),
                ..Default::default()
            })],
            ..Default::default()
        };
        assert_eq!(
            sql(inverse(&ddl("DROP INDEX ix"), &b)),
            ["CREATE UNIQUE INDEX CONCURRENTLY ix ON public.t USING btree (a)"]
        );
    }

    #[test]
    fn alter_table_actions_are_undone_in_reverse_order() {
        let mut columns = HashMap::new();
        columns.insert(
            "a".to_owned(),
            super::super::capture::ColSnap {
                default: Some("42".into()),
                not_null: false,
            },
        );
        let b = Before {
            table: t(),
            columns,
            ..Default::default()
        };
        assert_eq!(
            sql(inverse(
                &ddl(
                    "ALTER TABLE t ADD COLUMN b int, ALTER COLUMN a SET DEFAULT 1, ALTER COLUMN a SET NOT NULL"
                ),
                &b
            )),
            [
                r#"ALTER TABLE "public"."t" ALTER COLUMN "a" DROP NOT NULL"#,
                r#"ALTER TABLE "public"."t" ALTER COLUMN "a" SET DEFAULT 42"#,
                r#"ALTER TABLE "public"."t" DROP COLUMN "b""#,
            ]
        );
    }

    #[test]
    fn one_irreversible_action_makes_the_statement_irreversible() {
        let b = Before {
            table: t(),
            ..Default::default()
        };
        let r = inverse(&ddl("ALTER TABLE t ADD COLUMN b int, DROP COLUMN c"), &b);
        assert!(r.reason().unwrap().contains("DROP COLUMN c"), "{r:?}");
        for s in [
            "DROP TABLE t",
            "TRUNCATE t",
            "ALTER TYPE mood ADD VALUE 'x'",
            "CREATE EXTENSION hstore",
        ] {
            assert!(inverse(&ddl(s), &b).reason().is_some(), "{s}");
        }
    }

    #[test]
    fn dropped_check_and_fk_come_back_not_valid_then_validated() {
        let mut constraints = HashMap::new();
        constraints.insert(
            "c".to_owned(),
            super::super::capture::ConSnap {
                def: "CHECK ((a > 0))".into(),
                kind: "c".into(),
            },
        );
        constraints.insert(
            "u".to_owned(),
            super::super::capture::ConSnap {
                def: "UNIQUE (a)".into(),
                kind: "u".into(),
            },
        );
        let b = Before {
            table: t(),
            constraints,
            ..Default::default()
        };
        assert_eq!(
            sql(inverse(&ddl("ALTER TABLE t DROP CONSTRAINT c"), &b)),
            [
                r#"ALTER TABLE "public"."t" ADD CONSTRAINT "c" CHECK ((a > 0)) NOT VALID"#,
                r#"ALTER TABLE "public"."t" VALIDATE CONSTRAINT "c""#,
            ]
        );
        assert_eq!(
            sql(inverse(&ddl("ALTER TABLE t DROP CONSTRAINT u"), &b)),
            [r#"ALTER TABLE "public"."t" ADD CONSTRAINT "u" UNIQUE (a)"#]
        );
    }

    #[test]
    fn views_and_functions_from_their_snapshots() {
        use super::super::capture::ObjSnap;
        let created = Before {
            objects: vec![Some(ObjSnap {
                schema: "public".into(),
                name: "v".into(),
                ..Default::default()
            })],
            ..Default::default()
        };
        assert_eq!(
            sql(inverse(&ddl("CREATE VIEW v AS SELECT 1"), &created)),
            [r#"DROP VIEW "public"."v""#]
        );
        let dropped = Before {
            objects: vec![Some(ObjSnap {
                schema: "public".into(),
                name: "v".into(),
                oid: Some(5),
                def: Some(" SELECT 1 AS a;".into()),
                options: Some(vec!["security_barrier=true".into()]),
                ..Default::default()
            })],
            ..Default::default()
        };
        assert_eq!(
            sql(inverse(&ddl("DROP VIEW v"), &dropped)),
            [r#"CREATE VIEW "public"."v" WITH ("security_barrier"='true') AS  SELECT 1 AS a"#]
        );
        let f = Before {
            objects: vec![Some(ObjSnap {
                schema: "public".into(),
                name: "f".into(),
                args: Some("(a int, b text)".into()),
                ..Default::default()
            })],
            ..Default::default()
        };
        assert_eq!(
            sql(inverse(
                &ddl(
                    "CREATE FUNCTION f(a int, b text DEFAULT 'x') RETURNS int LANGUAGE sql AS 'SELECT 1'"
                ),
                &f
            )),
            [r#"DROP FUNCTION "public"."f"(a int, b text)"#]
        );
    }

    #[test]
    fn renames_go_back() {
        let b = Before {
            table: t(),
            ..Default::default()
        };
        assert_eq!(
            sql(inverse(&ddl("ALTER TABLE t RENAME TO u"), &b)),
            [r#"ALTER TABLE "public"."u" RENAME TO "t""#]
        );
        assert_eq!(
            sql(inverse(&ddl("ALTER TABLE t RENAME COLUMN a TO b"), &b)),
            [r#"ALTER TABLE "public"."t" RENAME COLUMN "b" TO "a""#]
        );
    }
}

//! `ALTER TABLE` for the fallback classifier: the header and each action of its comma-separated
//! list (ADD COLUMN / CONSTRAINT, ALTER COLUMN, DROP, RENAME, SET …).

use super::{Cursor, Kw, ident_text, lossy, other_kind};
use crate::sql::lexer::{Token, TokenKind};
use crate::sql::statement::{
    AddColumn, AddConstraint, AlterOp, ConstraintKind, DdlKind, DefaultExpr,
};

/// `ALTER TABLE [ IF EXISTS ] [ ONLY ] name [ * ] action [, ...]`, the RENAME / SET SCHEMA /
/// ATTACH / DETACH forms included. `ALTER TABLE ALL IN TABLESPACE …` has no readable name (ALL
/// is reserved) and is Unknown.
pub(super) fn alter_table(c: &mut Cursor<'_>) -> Option<DdlKind> {
    let if_exists = c.eat_all(&["IF", "EXISTS"]);
    let (name, only) = c.read_relation()?;
    let mut ops = Vec::new();
    loop {
        ops.push(alter_table_action(c)?);
        // Whatever an action parser left (CASCADE, USING INDEX TABLESPACE …, storage options)
        // up to the next top-level comma.
        c.skip_item();
        if !c.eat_kind(TokenKind::Comma) {
            break;
        }
    }
    c.expect_end()?;
    Some(DdlKind::AlterTable {
        name,
        only,
        if_exists,
        ops,
    })
}

/// ALTER TABLE sub-commands the rules do not single out, by leading words: (words, tag).
const ALTER_TABLE_OTHER: &[(&[&str], &str)] = &[
    (&["ENABLE", "ALWAYS", "RULE"], "ENABLE RULE"),
    (&["ENABLE", "REPLICA", "RULE"], "ENABLE RULE"),
    (&["ENABLE", "RULE"], "ENABLE RULE"),
    (&["DISABLE", "RULE"], "DISABLE RULE"),
    (&["NO", "INHERIT"], "NO INHERIT"),
    (&["INHERIT"], "INHERIT"),
    (&["NOT", "OF"], "NOT OF"),
    (&["OF"], "OF"),
    (&["CLUSTER", "ON"], "CLUSTER ON"),
    (&["OWNER", "TO"], "OWNER TO"),
    (&["REPLICA", "IDENTITY"], "REPLICA IDENTITY"),
    (&["RESET"], "RESET"),
];

/// One ALTER TABLE sub-command (gram.y's `alter_table_cmd`, plus the RENAME, SET SCHEMA and
/// partition commands). Consumes its leading part; the caller skips the rest of the item.
fn alter_table_action(c: &mut Cursor<'_>) -> Option<AlterOp> {
    if c.eat("ADD") {
        return alter_add(c);
    }
    if c.eat("DROP") {
        return alter_drop(c);
    }
    if c.eat("ALTER") {
        return alter_column(c);
    }
    if c.eat_all(&["VALIDATE", "CONSTRAINT"]) {
        let name = c.read_ident()?;
        return Some(AlterOp::ValidateConstraint { name });
    }
    if c.eat("RENAME") {
        return alter_rename(c);
    }
    if c.eat("SET") {
        return alter_set(c);
    }
    if c.eat_all(&["ATTACH", "PARTITION"]) {
        let partition = c.read_name()?;
        return Some(AlterOp::AttachPartition { partition });
    }
    if c.eat_all(&["DETACH", "PARTITION"]) {
        // FINALIZE completes an interrupted DETACH … CONCURRENTLY; reported as not concurrent,
        // the stricter reading.
        let partition = c.read_name()?;
        let concurrently = c.eat("CONCURRENTLY");
        return Some(AlterOp::DetachPartition {
            partition,
            concurrently,
        });
    }
    if c.eat_all(&["ENABLE", "ROW", "LEVEL", "SECURITY"])
        || c.eat_all(&["DISABLE", "ROW", "LEVEL", "SECURITY"])
        || c.eat_all(&["FORCE", "ROW", "LEVEL", "SECURITY"])
        || c.eat_all(&["NO", "FORCE", "ROW", "LEVEL", "SECURITY"])
    {
        return Some(AlterOp::RowLevelSecurity);
    }
    // `{ ENABLE [ ALWAYS | REPLICA ] | DISABLE } TRIGGER { name | ALL | USER }`
    if c.eat_all(&["ENABLE", "TRIGGER"])
        || c.eat_all(&["ENABLE", "ALWAYS", "TRIGGER"])
        || c.eat_all(&["ENABLE", "REPLICA", "TRIGGER"])
    {
        return Some(AlterOp::EnableTrigger);
    }
    if c.eat_all(&["DISABLE", "TRIGGER"]) {
        return Some(AlterOp::DisableTrigger);
    }
    if let Some(DdlKind::Other { tag }) = other_kind(c, ALTER_TABLE_OTHER) {
        return Some(AlterOp::Other(tag));
    }
    // Generic options of a foreign table. Any other word starts no sub-command ddlgate knows:
    // not understood (fail closed).
    if c.is("OPTIONS") {
        return c.head_tag().map(AlterOp::Other);
    }
    None
}

/// Table constraint keywords (all reserved, so never a column name), and EXCLUDE (unreserved:
/// a constraint only when `(` or USING follows).
fn starts_table_constraint(c: &Cursor<'_>) -> bool {
    ["CONSTRAINT", "CHECK", "UNIQUE", "PRIMARY", "FOREIGN", "NOT"]
        .iter()
        .any(|kw| c.is(kw))
        || (c.is("EXCLUDE")
            && c.peek2()
                .is_some_and(|t| t.kind == TokenKind::LParen || t.is_word(c.sql, "USING")))
}

/// `ADD [ COLUMN ] column_def` or `ADD table_constraint [ NOT VALID ]`.
fn alter_add(c: &mut Cursor<'_>) -> Option<AlterOp> {
    if !c.eat("COLUMN") && starts_table_constraint(c) {
        return add_constraint(c).map(AlterOp::AddConstraint);
    }
    add_column(c).map(AlterOp::AddColumn)
}

/// `[ CONSTRAINT name ] { CHECK ( … ) | UNIQUE [ NULLS [ NOT ] DISTINCT ] ( … ) | UNIQUE USING
/// INDEX i | PRIMARY KEY ( … ) | PRIMARY KEY USING INDEX i | EXCLUDE … | FOREIGN KEY ( … )
/// REFERENCES t … | NOT NULL col } [ NOT VALID ]` (NOT NULL: PG 18).
fn add_constraint(c: &mut Cursor<'_>) -> Option<AddConstraint> {
    let name = if c.eat("CONSTRAINT") {
        Some(c.read_ident()?)
    } else {
        None
    };
    let mut index = None;
    let kind = if c.eat("CHECK") {
        c.skip_parens()?;
        ConstraintKind::Check
    } else if c.eat("UNIQUE") {
        let using_index = c.eat_all(&["USING", "INDEX"]);
        if using_index {
            index = Some(c.read_ident()?);
        }
        ConstraintKind::Unique { using_index }
    } else if c.eat_all(&["PRIMARY", "KEY"]) {
        let using_index = c.eat_all(&["USING", "INDEX"]);
        if using_index {
            index = Some(c.read_ident()?);
        }
        ConstraintKind::PrimaryKey { using_index }
    } else if c.eat("EXCLUDE") {
        ConstraintKind::Exclusion
    } else if c.eat_all(&["FOREIGN", "KEY"]) {
        c.skip_parens()?;
        c.expect("REFERENCES")?;
        ConstraintKind::ForeignKey {
            references: c.read_name()?,
        }
    } else if c.eat_all(&["NOT", "NULL"]) {
        c.read_ident()?;
        ConstraintKind::NotNull
    } else {
        return None;
    };
    let not_valid = c.rest_has("NOT", Some("VALID"), false);
    Some(AddConstraint {
        name,
        kind,
        not_valid,
        index,
    })
}

/// Words that end a column's type: the start of a column constraint or option.
const COLUMN_TYPE_STOPS: &[&str] = &[
    "CONSTRAINT",
    "NOT",
    "NULL",
    "CHECK",
    "DEFAULT",
    "GENERATED",
    "UNIQUE",
    "PRIMARY",
    "REFERENCES",
    "COLLATE",
    "COMPRESSION",
    "STORAGE",
    "DEFERRABLE",
    "INITIALLY",
];

/// `serial` pseudo-types (`transformColumnDefinition` only looks at an unqualified name).
fn is_serial(data_type: &str) -> bool {
    let t = data_type
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(data_type);
    [
        "serial",
        "bigserial",
        "smallserial",
        "serial4",
        "serial8",
        "serial2",
    ]
    .contains(&t)
}

/// `[ IF NOT EXISTS ] name type [ COLLATE c ] [ column_constraint … ]` where a column constraint
/// is `[ CONSTRAINT n ] { NOT NULL | NULL | CHECK (…) | DEFAULT expr | GENERATED … | UNIQUE … |
/// PRIMARY KEY … | REFERENCES t … }` plus `COMPRESSION m`, `STORAGE s` (PG 16) and the
/// deferrability / enforcement attributes.
fn add_column(c: &mut Cursor<'_>) -> Option<AddColumn> {
    c.eat_all(&["IF", "NOT", "EXISTS"]);
    let name = c.read_ident()?;
    let data_type = c.read_type(COLUMN_TYPE_STOPS)?;
    let mut col = AddColumn {
        name,
        serial: is_serial(&data_type),
        data_type,
        not_null: false,
        default: None,
        identity: false,
        generated_stored: false,
        generated_virtual: false,
        constraints: Vec::new(),
    };
    loop {
        if c.eat_all(&["NOT", "NULL"]) {
            col.not_null = true;
        } else if c.eat("DEFAULT") {
            col.default = Some(read_default(c)?);
        } else if c.eat("CHECK") {
            c.skip_parens()?;
            col.constraints.push(ConstraintKind::Check);
        } else if c.eat("UNIQUE") {
            col.constraints
                .push(ConstraintKind::Unique { using_index: false });
        } else if c.eat_all(&["PRIMARY", "KEY"]) {
            col.constraints
                .push(ConstraintKind::PrimaryKey { using_index: false });
        } else if c.eat("REFERENCES") {
            let references = c.read_name()?;
            skip_fk_tail(c);
            col.constraints
                .push(ConstraintKind::ForeignKey { references });
        } else if c.eat("GENERATED") {
            generated(c, &mut col)?;
        } else if c.eat("CONSTRAINT") {
            c.read_ident()?;
        } else if c.eat("STORAGE") || c.eat("COMPRESSION") {
            // `STORAGE DEFAULT` must not read as a DEFAULT clause.
            c.item_next();
        } else if c.item_next().is_none() {
            break;
        }
    }
    Some(col)
}

/// `GENERATED { ALWAYS | BY DEFAULT } AS IDENTITY [ ( seq_options ) ]` or
/// `GENERATED ALWAYS AS ( expr ) [ STORED | VIRTUAL ]` (PG 18 defaults to VIRTUAL; only an
/// explicit VIRTUAL is reported).
fn generated(c: &mut Cursor<'_>, col: &mut AddColumn) -> Option<()> {
    let always = c.eat("ALWAYS");
    if !always {
        c.expect("BY")?;
        c.expect("DEFAULT")?;
    }
    c.expect("AS")?;
    if c.eat("IDENTITY") {
        col.identity = true;
        if c.is_kind(TokenKind::LParen) {
            c.skip_parens()?;
        }
    } else if always && c.is_kind(TokenKind::LParen) {
        c.skip_parens()?;
        if c.eat("STORED") {
            col.generated_stored = true;
        } else if c.eat("VIRTUAL") {
            col.generated_virtual = true;
        }
    } else {
        return None;
    }
    Some(())
}

/// After `REFERENCES t`: `[ ( col ) ] [ MATCH { FULL | PARTIAL | SIMPLE } ]
/// [ ON { DELETE | UPDATE } { NO ACTION | RESTRICT | CASCADE | SET { NULL | DEFAULT } [ ( cols ) ] } ]…`
/// — consumed so that `SET DEFAULT` is not taken for a DEFAULT clause.
fn skip_fk_tail(c: &mut Cursor<'_>) {
    if c.is_kind(TokenKind::LParen) {
        c.skip_parens();
    }
    loop {
        if c.eat("MATCH") {
            c.item_next();
        } else if c.eat_all(&["ON", "DELETE"]) || c.eat_all(&["ON", "UPDATE"]) {
            if c.eat("SET") {
                c.item_next();
                if c.is_kind(TokenKind::LParen) {
                    c.skip_parens();
                }
            } else {
                // NO ACTION | RESTRICT | CASCADE
                c.eat("NO");
                c.item_next();
            }
        } else {
            return;
        }
    }
}

/// Words that end a DEFAULT expression (gram.y's `b_expr`) at the top level: the next column
/// constraint. Unreserved ones only when not called as a function.
fn ends_default(c: &Cursor<'_>, t: Token, prev: Token) -> bool {
    let sql = c.sql;
    let called = || c.peek2().is_some_and(|n| n.kind == TokenKind::LParen);
    if [
        "CONSTRAINT",
        "CHECK",
        "DEFAULT",
        "UNIQUE",
        "PRIMARY",
        "REFERENCES",
        "COLLATE",
        "DEFERRABLE",
        "INITIALLY",
    ]
    .iter()
    .any(|kw| t.is_word(sql, kw))
    {
        return true;
    }
    if ["GENERATED", "COMPRESSION", "STORAGE", "ENFORCED"]
        .iter()
        .any(|kw| t.is_word(sql, kw))
    {
        return !called();
    }
    if t.is_word(sql, "NOT") {
        return ["NULL", "DEFERRABLE", "ENFORCED"]
            .iter()
            .any(|kw| c.is2(kw));
    }
    // A NULL after a complete operand is the NULL column constraint (`DEFAULT 0 NULL`); after an
    // operator or IS / FROM (`IS DISTINCT FROM NULL`) it is part of the expression.
    if t.is_word(sql, "NULL") {
        return match prev.kind {
            TokenKind::Operator => false,
            TokenKind::Word => !["IS", "FROM", "NOT"].iter().any(|kw| prev.is_word(sql, kw)),
            _ => true,
        };
    }
    false
}

/// `DEFAULT b_expr`: the expression text as written and the functions it calls (words or quoted
/// identifiers followed by `(`, lower-cased when unquoted, the last part of a qualified name;
/// reserved keywords such as CAST and type names after `::` are not calls).
fn read_default(c: &mut Cursor<'_>) -> Option<DefaultExpr> {
    let sql = c.sql;
    let start = c.peek()?.start;
    let mut functions = Vec::new();
    let (mut depth, mut case_depth) = (0usize, 0usize);
    let mut prev: Option<Token> = None;
    while let Some(t) = c.peek() {
        if depth == 0 {
            if matches!(t.kind, TokenKind::Comma | TokenKind::RParen) {
                break;
            }
            if case_depth == 0 && prev.is_some_and(|p| ends_default(c, t, p)) {
                break;
            }
        }
        match t.kind {
            TokenKind::LParen => depth += 1,
            TokenKind::RParen => depth -= 1,
            _ if t.is_word(sql, "CASE") => case_depth += 1,
            _ if t.is_word(sql, "END") => case_depth = case_depth.saturating_sub(1),
            _ => {}
        }
        c.next();
        let cast_or_as = prev.is_some_and(|p| {
            (p.kind == TokenKind::Operator && p.text(sql) == b"::") || p.is_word(sql, "AS")
        });
        if c.is_kind(TokenKind::LParen)
            && !cast_or_as
            && let Some(f) = ident_text(sql, t, Kw::NonReserved)
        {
            functions.push(f);
        }
        prev = Some(t);
    }
    if depth != 0 {
        c.bad = true;
    }
    prev?;
    Some(DefaultExpr {
        text: lossy(sql.get(start..c.last_end)?),
        functions,
    })
}

/// `ALTER [ COLUMN ] c { [ SET DATA ] TYPE t [ COLLATE x ] [ USING expr ] | SET NOT NULL |
/// DROP NOT NULL | SET DEFAULT e | DROP DEFAULT | SET STATISTICS n | … }` and
/// `ALTER CONSTRAINT …`.
fn alter_column(c: &mut Cursor<'_>) -> Option<AlterOp> {
    if c.eat("CONSTRAINT") {
        return Some(AlterOp::Other("ALTER CONSTRAINT".to_owned()));
    }
    c.eat("COLUMN");
    let column = c.read_ident()?;
    if c.eat_all(&["SET", "DATA", "TYPE"]) || c.eat("TYPE") {
        let data_type = c.read_type(&["COLLATE", "USING"])?;
        let using = c.rest_has("USING", None, false);
        return Some(AlterOp::AlterColumnType {
            column,
            data_type,
            using,
        });
    }
    if c.eat_all(&["SET", "NOT", "NULL"]) {
        return Some(AlterOp::SetNotNull { column });
    }
    if c.eat_all(&["DROP", "NOT", "NULL"]) {
        return Some(AlterOp::DropNotNull { column });
    }
    if c.eat_all(&["SET", "DEFAULT"]) {
        return Some(AlterOp::SetDefault { column });
    }
    if c.eat_all(&["DROP", "DEFAULT"]) {
        return Some(AlterOp::DropDefault { column });
    }
    if c.is("SET") && c.is2("STATISTICS") {
        return Some(AlterOp::Other("SET STATISTICS".to_owned()));
    }
    // SET STORAGE, SET COMPRESSION, SET ( … ), RESET ( … ), ADD GENERATED, SET GENERATED, the
    // identity's sequence options (SET INCREMENT …), DROP IDENTITY, SET EXPRESSION, DROP
    // EXPRESSION, RESTART, OPTIONS (foreign tables): gram.y's `alter_table_cmd` and
    // `alter_identity_column_option`. Any other word is not a form ddlgate knows, so the
    // statement is not understood (fail closed), never a harmless "other".
    const SET_WORDS: &[&str] = &[
        "STORAGE",
        "COMPRESSION",
        "GENERATED",
        "EXPRESSION",
        "AS",
        "CACHE",
        "CYCLE",
        "INCREMENT",
        "LOGGED",
        "MAXVALUE",
        "MINVALUE",
        "NO",
        "OWNED",
        "SEQUENCE",
        "START",
        "RESTART",
        "UNLOGGED",
    ];
    let known = if c.is("SET") {
        c.peek2()
            .is_some_and(|t| t.kind == TokenKind::LParen || SET_WORDS.iter().any(|w| c.is2(w)))
    } else if c.is("RESET") {
        c.peek2().is_some_and(|t| t.kind == TokenKind::LParen)
    } else if c.is("DROP") {
        c.is2("IDENTITY") || c.is2("EXPRESSION")
    } else if c.is("ADD") {
        c.is2("GENERATED")
    } else {
        c.is("RESTART") || c.is("OPTIONS")
    };
    if !known {
        return None;
    }
    c.head_tag().map(AlterOp::Other)
}

/// `DROP CONSTRAINT [ IF EXISTS ] n` or `DROP [ COLUMN ] [ IF EXISTS ] c`, then
/// `[ RESTRICT | CASCADE ]`.
fn alter_drop(c: &mut Cursor<'_>) -> Option<AlterOp> {
    if c.eat("CONSTRAINT") {
        c.eat_all(&["IF", "EXISTS"]);
        let name = c.read_ident()?;
        return Some(AlterOp::DropConstraint { name });
    }
    c.eat("COLUMN");
    c.eat_all(&["IF", "EXISTS"]);
    let name = c.read_ident()?;
    Some(AlterOp::DropColumn { name })
}

/// `RENAME TO t`, `RENAME CONSTRAINT a TO b` or `RENAME [ COLUMN ] a TO b`.
fn alter_rename(c: &mut Cursor<'_>) -> Option<AlterOp> {
    if c.eat("TO") {
        let to = c.read_ident()?;
        return Some(AlterOp::RenameTable { to });
    }
    if c.eat("CONSTRAINT") {
        return Some(AlterOp::Other("RENAME CONSTRAINT".to_owned()));
    }
    c.eat("COLUMN");
    let from = c.read_ident()?;
    c.expect("TO")?;
    let to = c.read_ident()?;
    Some(AlterOp::RenameColumn { from, to })
}

/// The `SET …` sub-commands of ALTER TABLE.
fn alter_set(c: &mut Cursor<'_>) -> Option<AlterOp> {
    let op = if c.eat("TABLESPACE") {
        AlterOp::SetTablespace
    } else if c.eat("LOGGED") {
        AlterOp::SetLogged
    } else if c.eat("UNLOGGED") {
        AlterOp::SetUnlogged
    } else if c.eat_all(&["ACCESS", "METHOD"]) {
        AlterOp::SetAccessMethod
    } else if c.eat("SCHEMA") {
        AlterOp::SetSchema
    } else if c.eat_all(&["WITHOUT", "CLUSTER"]) {
        AlterOp::Other("SET WITHOUT CLUSTER".to_owned())
    } else if c.eat_all(&["WITHOUT", "OIDS"]) {
        AlterOp::Other("SET WITHOUT OIDS".to_owned())
    } else if c.is_kind(TokenKind::LParen) {
        AlterOp::Other("SET".to_owned())
    } else {
        // gram.y has no other `SET` sub-command of ALTER TABLE: not understood (fail closed).
        return None;
    };
    Some(op)
}

#[cfg(test)]
mod tests {
    use super::super::tests::*;
    use super::*;
    use crate::sql::statement::{Name, Understood};

    fn alter(name: &str, ops: Vec<AlterOp>) -> DdlKind {
        DdlKind::AlterTable {
            name: n(name),
            only: false,
            if_exists: false,
            ops,
        }
    }

    fn op_other(tag: &str) -> AlterOp {
        AlterOp::Other(tag.to_owned())
    }

    fn column(name: &str, data_type: &str) -> AddColumn {
        AddColumn {
            name: name.to_owned(),
            data_type: data_type.to_owned(),
            not_null: false,
            default: None,
            serial: false,
            identity: false,
            generated_stored: false,
            generated_virtual: false,
            constraints: Vec::new(),
        }
    }

    fn add_constraint(name: Option<&str>, kind: ConstraintKind, not_valid: bool) -> AlterOp {
        AlterOp::AddConstraint(AddConstraint {
            name: name.map(str::to_owned),
            kind,
            not_valid,
            index: None,
        })
    }

    fn using_index(op: AlterOp, index: &str) -> AlterOp {
        match op {
            AlterOp::AddConstraint(c) => AlterOp::AddConstraint(AddConstraint {
                index: Some(index.to_owned()),
                ..c
            }),
            other => other,
        }
    }

    #[test]
    fn alter_table_single_actions() {
        use AlterOp::*;
        let s = |x: &str| x.to_owned();
        let cases: Vec<(&str, AlterOp)> = vec![
            ("ALTER TABLE t SET TABLESPACE fast", SetTablespace),
            ("ALTER TABLE t SET LOGGED", SetLogged),
            ("ALTER TABLE t SET UNLOGGED", SetUnlogged),
            ("ALTER TABLE t SET ACCESS METHOD heap2", SetAccessMethod),
            ("ALTER TABLE t SET SCHEMA archive", SetSchema),
            ("ALTER TABLE t SET (fillfactor = 70)", op_other("SET")),
            ("ALTER TABLE t RESET (fillfactor)", op_other("RESET")),
            (
                "ALTER TABLE t SET WITHOUT CLUSTER",
                op_other("SET WITHOUT CLUSTER"),
            ),
            (
                "ALTER TABLE t ALTER COLUMN c SET STATISTICS 500",
                op_other("SET STATISTICS"),
            ),
            (
                "ALTER TABLE t ALTER c SET STORAGE EXTERNAL",
                op_other("SET STORAGE"),
            ),
            (
                "ALTER TABLE t ALTER COLUMN c DROP IDENTITY IF EXISTS",
                op_other("DROP IDENTITY"),
            ),
            (
                "ALTER TABLE t ALTER COLUMN c TYPE citext COLLATE \"C\"",
                AlterColumnType {
                    column: s("c"),
                    data_type: s("citext"),
                    using: false,
                },
            ),
            (
                "ALTER TABLE t ALTER c SET DATA TYPE NUMERIC(10, 2) USING c::numeric",
                AlterColumnType {
                    column: s("c"),
                    data_type: s("numeric(10,2)"),
                    using: true,
                },
            ),
            (
                "ALTER TABLE t ALTER COLUMN ts TYPE timestamp(3) WITH TIME ZONE",
                AlterColumnType {
                    column: s("ts"),
                    data_type: s("timestamp(3) with time zone"),
                    using: false,
                },
            ),
            (
                "ALTER TABLE t ALTER COLUMN c TYPE character varying(20)[]",
                AlterColumnType {
                    column: s("c"),
                    data_type: s("character varying(20)[]"),
                    using: false,
                },
            ),
            (
                "ALTER TABLE t ALTER COLUMN c SET NOT NULL",
                SetNotNull { column: s("c") },
            ),
            (
                "ALTER TABLE t ALTER c DROP NOT NULL",
                DropNotNull { column: s("c") },
            ),
            (
                "ALTER TABLE t ALTER COLUMN c SET DEFAULT now()",
                SetDefault { column: s("c") },
            ),
            (
                "ALTER TABLE t ALTER COLUMN \"C\" DROP DEFAULT",
                DropDefault { column: s("C") },
            ),
            (
                "ALTER TABLE t VALIDATE CONSTRAINT fk",
                ValidateConstraint { name: s("fk") },
            ),
            (
                "ALTER TABLE t DROP CONSTRAINT IF EXISTS fk CASCADE",
                DropConstraint { name: s("fk") },
            ),
            (
                "ALTER TABLE t DROP COLUMN IF EXISTS c",
                DropColumn { name: s("c") },
            ),
            ("ALTER TABLE t DROP c RESTRICT", DropColumn { name: s("c") }),
            (
                "ALTER TABLE t RENAME COLUMN a TO b",
                RenameColumn {
                    from: s("a"),
                    to: s("b"),
                },
            ),
            (
                "ALTER TABLE t RENAME a TO \"B\"",
                RenameColumn {
                    from: s("a"),
                    to: s("B"),
                },
            ),
            ("ALTER TABLE t RENAME TO u", RenameTable { to: s("u") }),
            (
                "ALTER TABLE t RENAME CONSTRAINT a TO b",
                op_other("RENAME CONSTRAINT"),
            ),
            (
                "ALTER TABLE t ATTACH PARTITION m_2024 FOR VALUES FROM ('2024-01-01') TO ('2025-01-01')",
                AttachPartition {
                    partition: n("m_2024"),
                },
            ),
            (
                "ALTER TABLE t ATTACH PARTITION s.p DEFAULT",
                AttachPartition {
                    partition: n("s.p"),
                },
            ),
            (
                "ALTER TABLE t DETACH PARTITION p CONCURRENTLY",
                DetachPartition {
                    partition: n("p"),
                    concurrently: true,
                },
            ),
            (
                "ALTER TABLE t DETACH PARTITION p FINALIZE",
                DetachPartition {
                    partition: n("p"),
                    concurrently: false,
                },
            ),
            (
                "ALTER TABLE t DETACH PARTITION p",
                DetachPartition {
                    partition: n("p"),
                    concurrently: false,
                },
            ),
            ("ALTER TABLE t ENABLE TRIGGER ALL", EnableTrigger),
            ("ALTER TABLE t ENABLE REPLICA TRIGGER tr", EnableTrigger),
            ("ALTER TABLE t DISABLE TRIGGER USER", DisableTrigger),
            ("ALTER TABLE t ENABLE ROW LEVEL SECURITY", RowLevelSecurity),
            (
                "ALTER TABLE t NO FORCE ROW LEVEL SECURITY",
                RowLevelSecurity,
            ),
            ("ALTER TABLE t FORCE ROW LEVEL SECURITY", RowLevelSecurity),
            (
                "ALTER TABLE t ENABLE ALWAYS RULE r",
                op_other("ENABLE RULE"),
            ),
            ("ALTER TABLE t OWNER TO bob", op_other("OWNER TO")),
            ("ALTER TABLE t CLUSTER ON t_pkey", op_other("CLUSTER ON")),
            (
                "ALTER TABLE t REPLICA IDENTITY FULL",
                op_other("REPLICA IDENTITY"),
            ),
            ("ALTER TABLE t INHERIT parent", op_other("INHERIT")),
            ("ALTER TABLE t NO INHERIT parent", op_other("NO INHERIT")),
            (
                "ALTER TABLE t ALTER CONSTRAINT fk DEFERRABLE",
                op_other("ALTER CONSTRAINT"),
            ),
            ("ALTER TABLE t OPTIONS (ADD a '1')", op_other("OPTIONS")),
            (
                "ALTER TABLE t ALTER COLUMN c SET STORAGE EXTERNAL",
                op_other("SET STORAGE"),
            ),
            (
                "ALTER TABLE t ALTER COLUMN c SET INCREMENT BY 2",
                op_other("SET INCREMENT"),
            ),
            (
                "ALTER TABLE t ADD CONSTRAINT u UNIQUE USING INDEX u_idx",
                using_index(
                    add_constraint(
                        Some("u"),
                        ConstraintKind::Unique { using_index: true },
                        false,
                    ),
                    "u_idx",
                ),
            ),
            (
                "ALTER TABLE t ADD PRIMARY KEY USING INDEX t_pk",
                using_index(
                    add_constraint(
                        None,
                        ConstraintKind::PrimaryKey { using_index: true },
                        false,
                    ),
                    "t_pk",
                ),
            ),
            (
                "ALTER TABLE t ADD PRIMARY KEY (a, b)",
                add_constraint(
                    None,
                    ConstraintKind::PrimaryKey { using_index: false },
                    false,
                ),
            ),
            (
                "ALTER TABLE t ADD CONSTRAINT c CHECK (a > 0) NOT VALID",
                add_constraint(Some("c"), ConstraintKind::Check, true),
            ),
            (
                "ALTER TABLE t ADD UNIQUE NULLS NOT DISTINCT (a)",
                add_constraint(None, ConstraintKind::Unique { using_index: false }, false),
            ),
            (
                "ALTER TABLE t ADD CONSTRAINT ex EXCLUDE USING gist (r WITH &&)",
                add_constraint(Some("ex"), ConstraintKind::Exclusion, false),
            ),
            (
                "ALTER TABLE t ADD CONSTRAINT nn NOT NULL c",
                add_constraint(Some("nn"), ConstraintKind::NotNull, false),
            ),
            (
                "ALTER TABLE t ADD FOREIGN KEY (a) REFERENCES s.o (id) ON DELETE SET NULL NOT VALID",
                add_constraint(
                    None,
                    ConstraintKind::ForeignKey {
                        references: n("s.o"),
                    },
                    true,
                ),
            ),
        ];
        for (sql, op) in cases {
            let got = classify_str(sql);
            assert_eq!(got.kind, alter("t", vec![op]), "classifying {sql:?}");
            assert_eq!(got.understood, Understood::Fallback);
        }
    }

    /// A sub-command word gram.y does not have is not a harmless "other" sub-command: the
    /// statement is not understood, so the policy fails closed on it (`unparsed-ddl`).
    #[test]
    fn unknown_alter_table_forms_are_not_understood() {
        for sql in [
            "ALTER TABLE t FROBNICATE HARD",
            "ALTER TABLE t SET FROB",
            "ALTER TABLE t ALTER COLUMN c SET FROB",
            "ALTER TABLE t ALTER COLUMN c DROP FROB",
            "ALTER TABLE t ALTER COLUMN c ADD FROB",
            "ALTER TABLE t ALTER COLUMN c RESET FROB",
        ] {
            assert_eq!(classify_str(sql).understood, Understood::Unknown, "{sql}");
        }
    }

    #[test]
    fn alter_table_header_and_action_lists() {
        use AlterOp::*;
        let got = kind(
            "ALTER TABLE t ADD COLUMN a int NOT NULL DEFAULT 0, ADD CONSTRAINT fk FOREIGN KEY (a) \
             REFERENCES o (id) NOT VALID, VALIDATE CONSTRAINT c2, ALTER COLUMN b SET NOT NULL",
        );
        let want = alter(
            "t",
            vec![
                AddColumn(super::AddColumn {
                    not_null: true,
                    default: Some(DefaultExpr {
                        text: "0".to_owned(),
                        functions: vec![],
                    }),
                    ..column("a", "int")
                }),
                add_constraint(
                    Some("fk"),
                    ConstraintKind::ForeignKey { references: n("o") },
                    true,
                ),
                ValidateConstraint {
                    name: "c2".to_owned(),
                },
                SetNotNull {
                    column: "b".to_owned(),
                },
            ],
        );
        assert_eq!(got, want);

        let got = kind("alter table if exists only Public.\"Users\" set tablespace x, set logged");
        let want = DdlKind::AlterTable {
            name: Name::new(Some("public"), "Users"),
            only: true,
            if_exists: true,
            ops: vec![SetTablespace, SetLogged],
        };
        assert_eq!(got, want);

        // `name *` and commas inside parentheses do not split actions.
        let got =
            kind("ALTER TABLE t * SET (fillfactor = 70, autovacuum_enabled = off), OWNER TO x");
        assert_eq!(got, alter("t", vec![op_other("SET"), op_other("OWNER TO")]));
    }

    #[test]
    fn alter_table_add_column() {
        use ConstraintKind::*;
        let add = |sql: &str| match kind(sql) {
            DdlKind::AlterTable { mut ops, .. } if ops.len() == 1 => match ops.pop() {
                Some(AlterOp::AddColumn(col)) => col,
                other => panic!("{sql:?}: not ADD COLUMN: {other:?}"),
            },
            other => panic!("{sql:?}: {other:?}"),
        };
        let default = |text: &str, functions: &[&str]| {
            Some(DefaultExpr {
                text: text.to_owned(),
                functions: functions.iter().map(|f| f.to_string()).collect(),
            })
        };
        let cases: Vec<(&str, AddColumn)> = vec![
            (
                "ALTER TABLE t ADD COLUMN id uuid DEFAULT gen_random_uuid()",
                AddColumn {
                    default: default("gen_random_uuid()", &["gen_random_uuid"]),
                    ..column("id", "uuid")
                },
            ),
            (
                "ALTER TABLE t ADD COLUMN id uuid NOT NULL DEFAULT public.gen_random_uuid() PRIMARY KEY",
                AddColumn {
                    not_null: true,
                    default: default("public.gen_random_uuid()", &["gen_random_uuid"]),
                    constraints: vec![PrimaryKey { using_index: false }],
                    ..column("id", "uuid")
                },
            ),
            (
                "ALTER TABLE t ADD COLUMN n bigserial",
                AddColumn {
                    serial: true,
                    ..column("n", "bigserial")
                },
            ),
            (
                "ALTER TABLE t ADD n SERIAL4 UNIQUE",
                AddColumn {
                    serial: true,
                    constraints: vec![Unique { using_index: false }],
                    ..column("n", "serial4")
                },
            ),
            (
                "ALTER TABLE t ADD COLUMN n bigint GENERATED BY DEFAULT AS IDENTITY (START WITH 10)",
                AddColumn {
                    identity: true,
                    ..column("n", "bigint")
                },
            ),
            (
                "ALTER TABLE t ADD COLUMN n int GENERATED ALWAYS AS IDENTITY",
                AddColumn {
                    identity: true,
                    ..column("n", "int")
                },
            ),
            (
                "ALTER TABLE t ADD COLUMN total numeric(12, 2) GENERATED ALWAYS AS (price * qty) STORED",
                AddColumn {
                    generated_stored: true,
                    ..column("total", "numeric(12,2)")
                },
            ),
            (
                "ALTER TABLE t ADD COLUMN total int GENERATED ALWAYS AS (a + b) VIRTUAL",
                AddColumn {
                    generated_virtual: true,
                    ..column("total", "int")
                },
            ),
            (
                "ALTER TABLE t ADD COLUMN total int GENERATED ALWAYS AS (a + b)",
                column("total", "int"),
            ),
            (
                "ALTER TABLE t ADD COLUMN IF NOT EXISTS o_id bigint REFERENCES s.o (id) ON DELETE SET DEFAULT CHECK (o_id > 0)",
                AddColumn {
                    constraints: vec![
                        ForeignKey {
                            references: n("s.o"),
                        },
                        Check,
                    ],
                    ..column("o_id", "bigint")
                },
            ),
            (
                "ALTER TABLE t ADD COLUMN d timestamp with time zone DEFAULT now() NOT NULL",
                AddColumn {
                    not_null: true,
                    default: default("now()", &["now"]),
                    ..column("d", "timestamp with time zone")
                },
            ),
            (
                "ALTER TABLE t ADD COLUMN s text COLLATE \"C\" STORAGE DEFAULT DEFAULT 'x'::text",
                AddColumn {
                    default: default("'x'::text", &[]),
                    ..column("s", "text")
                },
            ),
            (
                "ALTER TABLE t ADD COLUMN c int DEFAULT CASE WHEN random() > 0.5 THEN NULL ELSE 1 END NULL",
                AddColumn {
                    default: default("CASE WHEN random() > 0.5 THEN NULL ELSE 1 END", &["random"]),
                    ..column("c", "int")
                },
            ),
            (
                "ALTER TABLE t ADD COLUMN c numeric DEFAULT CAST(nextval('s') AS numeric(10))",
                AddColumn {
                    default: default("CAST(nextval('s') AS numeric(10))", &["nextval"]),
                    ..column("c", "numeric")
                },
            ),
            (
                "ALTER TABLE t ADD COLUMN c double precision[] CONSTRAINT pos CHECK (c > 0) NOT NULL",
                AddColumn {
                    not_null: true,
                    constraints: vec![Check],
                    ..column("c", "double precision[]")
                },
            ),
            // A column named `exclude` (EXCLUDE is unreserved).
            ("ALTER TABLE t ADD exclude int", column("exclude", "int")),
        ];
        for (sql, want) in cases {
            assert_eq!(add(sql), want, "classifying {sql:?}");
        }
    }
}

//! `ALTER …` for the fallback classifier: the dispatch by object kind and every `ALTER` form
//! other than `ALTER TABLE`'s own (foreign table, schema, view, index, type, domain).

use super::alter_table::alter_table;
use super::{Cursor, drop_behavior, other, other_kind};
use crate::sql::lexer::TokenKind;
use crate::sql::statement::{AlterOp, DdlKind, Name};

/// `ALTER` object kinds recognised by their leading words: (words, command tag).
const ALTER_KINDS: &[(&[&str], &str)] = &[
    (&["AGGREGATE"], "ALTER AGGREGATE"),
    (&["COLLATION"], "ALTER COLLATION"),
    (&["CONVERSION"], "ALTER CONVERSION"),
    (&["DATABASE"], "ALTER DATABASE"),
    (&["DEFAULT", "PRIVILEGES"], "ALTER DEFAULT PRIVILEGES"),
    (&["EVENT", "TRIGGER"], "ALTER EVENT TRIGGER"),
    (&["EXTENSION"], "ALTER EXTENSION"),
    (
        &["FOREIGN", "DATA", "WRAPPER"],
        "ALTER FOREIGN DATA WRAPPER",
    ),
    (&["FOREIGN", "TABLE"], "ALTER FOREIGN TABLE"),
    (&["FUNCTION"], "ALTER FUNCTION"),
    (&["GROUP"], "ALTER ROLE"),
    (&["LANGUAGE"], "ALTER LANGUAGE"),
    (&["PROCEDURAL", "LANGUAGE"], "ALTER LANGUAGE"),
    (&["LARGE", "OBJECT"], "ALTER LARGE OBJECT"),
    (&["MATERIALIZED", "VIEW"], "ALTER MATERIALIZED VIEW"),
    (&["OPERATOR", "CLASS"], "ALTER OPERATOR CLASS"),
    (&["OPERATOR", "FAMILY"], "ALTER OPERATOR FAMILY"),
    (&["OPERATOR"], "ALTER OPERATOR"),
    (&["POLICY"], "ALTER POLICY"),
    (&["PROCEDURE"], "ALTER PROCEDURE"),
    (&["PUBLICATION"], "ALTER PUBLICATION"),
    (&["ROLE"], "ALTER ROLE"),
    (&["ROUTINE"], "ALTER ROUTINE"),
    (&["RULE"], "ALTER RULE"),
    (&["SCHEMA"], "ALTER SCHEMA"),
    (&["SEQUENCE"], "ALTER SEQUENCE"),
    (&["SERVER"], "ALTER SERVER"),
    (&["STATISTICS"], "ALTER STATISTICS"),
    (&["SUBSCRIPTION"], "ALTER SUBSCRIPTION"),
    (&["SYSTEM"], "ALTER SYSTEM"),
    (&["TABLESPACE"], "ALTER TABLESPACE"),
    (
        &["TEXT", "SEARCH", "CONFIGURATION"],
        "ALTER TEXT SEARCH CONFIGURATION",
    ),
    (
        &["TEXT", "SEARCH", "DICTIONARY"],
        "ALTER TEXT SEARCH DICTIONARY",
    ),
    (&["TEXT", "SEARCH", "PARSER"], "ALTER TEXT SEARCH PARSER"),
    (
        &["TEXT", "SEARCH", "TEMPLATE"],
        "ALTER TEXT SEARCH TEMPLATE",
    ),
    (&["TRIGGER"], "ALTER TRIGGER"),
    (&["USER", "MAPPING"], "ALTER USER MAPPING"),
    (&["USER"], "ALTER ROLE"),
    (&["VIEW"], "ALTER VIEW"),
];

pub(super) fn alter(c: &mut Cursor<'_>) -> Option<DdlKind> {
    if c.eat("TABLE") {
        return alter_table(c);
    }
    if c.eat("INDEX") {
        return alter_index(c);
    }
    if c.eat("TYPE") {
        return alter_type(c);
    }
    if c.eat("DOMAIN") {
        return alter_domain(c);
    }
    if c.eat("SCHEMA") {
        return alter_schema(c);
    }
    if c.eat("VIEW") {
        return alter_view(c, false);
    }
    if c.eat_all(&["MATERIALIZED", "VIEW"]) {
        return alter_view(c, true);
    }
    if c.eat_all(&["FOREIGN", "TABLE"]) {
        return Some(alter_foreign_table(c));
    }
    for (words, tag) in RENAMED_KINDS {
        let save = c.clone();
        if c.eat_all(words) {
            if let Some(kind) = renamed_object(c, tag) {
                return Some(kind);
            }
            *c = save;
            break;
        }
    }
    other_kind(c, ALTER_KINDS)
}

/// Objects running code calls or reads by name, whose `RENAME TO` the `renaming-object` rule
/// flags (types, views and tables have their own readers).
const RENAMED_KINDS: &[(&[&str], &str)] = &[
    (&["SEQUENCE"], "ALTER SEQUENCE"),
    (&["FUNCTION"], "ALTER FUNCTION"),
    (&["PROCEDURE"], "ALTER PROCEDURE"),
    (&["ROUTINE"], "ALTER ROUTINE"),
    (&["AGGREGATE"], "ALTER AGGREGATE"),
];

/// `[ IF EXISTS ] name [ ( signature ) ] RENAME TO new` for one of [`RENAMED_KINDS`]; `None`
/// for any other form (the caller classifies it by its tag).
fn renamed_object(c: &mut Cursor<'_>, tag: &str) -> Option<DdlKind> {
    c.eat_all(&["IF", "EXISTS"]);
    let name = c.read_name()?;
    if c.is_kind(TokenKind::LParen) {
        c.skip_parens()?;
    }
    rename_to(c, tag, &name)
}

/// `RENAME TO new` ending the statement, as a [`DdlKind::RenameObject`].
fn rename_to(c: &mut Cursor<'_>, tag: &str, name: &Name) -> Option<DdlKind> {
    let save = c.clone();
    if c.eat_all(&["RENAME", "TO"])
        && let Some(to) = c.read_ident()
        && c.at_end()
    {
        return Some(DdlKind::RenameObject {
            tag: tag.to_owned(),
            name: name.clone(),
            to,
        });
    }
    *c = save;
    None
}

/// `ALTER FOREIGN TABLE [ IF EXISTS ] [ ONLY ] name [ * ] RENAME [ COLUMN ] a TO b`: PostgreSQL
/// renames the column of a plain table this way too (renameatt does not check the relkind), so
/// it is the ALTER TABLE sub-command it amounts to. Every other form is `Other` (PostgreSQL
/// rejects them on anything but a foreign table).
fn alter_foreign_table(c: &mut Cursor<'_>) -> DdlKind {
    let mut probe = c.clone();
    let if_exists = probe.eat_all(&["IF", "EXISTS"]);
    let renamed = (|| {
        let (name, only) = probe.read_relation()?;
        probe.expect("RENAME")?;
        if probe.is("TO") || probe.is("CONSTRAINT") {
            return None;
        }
        probe.eat("COLUMN");
        let from = probe.read_ident()?;
        probe.expect("TO")?;
        let to = probe.read_ident()?;
        probe.expect_end()?;
        Some(DdlKind::AlterTable {
            name,
            only,
            if_exists,
            ops: vec![AlterOp::RenameColumn { from, to }],
        })
    })();
    match renamed {
        Some(kind) => {
            *c = probe;
            kind
        }
        None => other("ALTER FOREIGN TABLE"),
    }
}

/// `ALTER SCHEMA name RENAME TO new`; `OWNER TO` is `Other`.
fn alter_schema(c: &mut Cursor<'_>) -> Option<DdlKind> {
    let name = c.read_ident()?;
    if c.eat_all(&["RENAME", "TO"]) {
        let to = c.read_ident()?;
        c.expect_end()?;
        return Some(DdlKind::RenameSchema { name, to });
    }
    Some(other("ALTER SCHEMA"))
}

/// `ALTER [ MATERIALIZED ] VIEW [ IF EXISTS ] name RENAME [ COLUMN ] a TO b` and `… RENAME TO
/// new`; the other forms (`ALTER COLUMN`, `OWNER TO`, `SET …`, `ALL IN TABLESPACE`) are `Other`.
fn alter_view(c: &mut Cursor<'_>, materialized: bool) -> Option<DdlKind> {
    let tag = if materialized {
        "ALTER MATERIALIZED VIEW"
    } else {
        "ALTER VIEW"
    };
    if c.is("ALL") {
        return Some(other(tag));
    }
    c.eat_all(&["IF", "EXISTS"]);
    let name = c.read_name()?;
    if !c.eat("RENAME") {
        return Some(other(tag));
    }
    let column = if c.eat("TO") {
        None
    } else {
        c.eat("COLUMN");
        let from = c.read_ident()?;
        c.expect("TO")?;
        Some(from)
    };
    let to = c.read_ident()?;
    c.expect_end()?;
    Some(DdlKind::RenameView {
        name,
        materialized,
        column,
        to,
    })
}

/// `ALTER INDEX [ IF EXISTS ] name { RENAME TO n | SET TABLESPACE t | ATTACH PARTITION i |
/// [ NO ] DEPENDS ON EXTENSION e | SET ( … ) | RESET ( … ) | ALTER [ COLUMN ] n SET STATISTICS s }`
/// and `ALTER INDEX ALL IN TABLESPACE …`. Other (or several comma-separated) sub-commands are
/// Unknown.
fn alter_index(c: &mut Cursor<'_>) -> Option<DdlKind> {
    if c.eat_all(&["ALL", "IN", "TABLESPACE"]) {
        c.skip_rest();
        return Some(DdlKind::AlterIndex {
            name: Name::bare("all"),
            action: "ALL IN TABLESPACE".to_owned(),
        });
    }
    c.eat_all(&["IF", "EXISTS"]);
    let name = c.read_name()?;
    let action = if c.eat_all(&["RENAME", "TO"]) {
        "RENAME"
    } else if c.eat_all(&["SET", "TABLESPACE"]) {
        "SET TABLESPACE"
    } else if c.eat_all(&["ATTACH", "PARTITION"]) {
        "ATTACH PARTITION"
    } else if c.eat_all(&["DEPENDS", "ON", "EXTENSION"])
        || c.eat_all(&["NO", "DEPENDS", "ON", "EXTENSION"])
    {
        "DEPENDS ON EXTENSION"
    } else if c.is("SET") && c.peek2().is_some_and(|t| t.kind == TokenKind::LParen) {
        "SET"
    } else if c.is("RESET") && c.peek2().is_some_and(|t| t.kind == TokenKind::LParen) {
        "RESET"
    } else if c.eat("ALTER") {
        "ALTER COLUMN"
    } else {
        return None;
    };
    c.skip_item();
    c.expect_end()?;
    Some(DdlKind::AlterIndex {
        name,
        action: action.to_owned(),
    })
}

/// `ALTER TYPE name ADD VALUE [ IF NOT EXISTS ] 'v' [ { BEFORE | AFTER } 'w' ]` / `RENAME
/// VALUE …` / `RENAME ATTRIBUTE …` / `RENAME TO …`; other ALTER TYPE forms are `Other`.
fn alter_type(c: &mut Cursor<'_>) -> Option<DdlKind> {
    let type_name = c.read_name()?;
    if c.eat_all(&["ADD", "VALUE"]) {
        c.eat_all(&["IF", "NOT", "EXISTS"]);
        let value = c
            .peek()
            .filter(|t| t.kind == TokenKind::String)
            .and_then(|t| super::string_content(c.sql, t, c.opts));
        if value.is_some() {
            c.next();
        }
        let positioned = c.is("BEFORE") || c.is("AFTER");
        return Some(DdlKind::AlterTypeAddValue {
            type_name,
            value,
            positioned,
        });
    }
    if let Some(kind) = rename_to(c, "ALTER TYPE", &type_name) {
        return Some(kind);
    }
    if c.eat_all(&["RENAME", "VALUE"]) {
        return Some(DdlKind::AlterTypeRenameValue { type_name });
    }
    if c.eat_all(&["RENAME", "ATTRIBUTE"]) {
        let from = c.read_ident()?;
        c.expect("TO")?;
        let to = c.read_ident()?;
        drop_behavior(c);
        c.expect_end()?;
        return Some(DdlKind::AlterTypeRenameAttribute {
            type_name,
            from,
            to,
        });
    }
    Some(other("ALTER TYPE"))
}

/// `ALTER DOMAIN name ADD [ CONSTRAINT c ] constraint [ NOT VALID ]`; other forms are `Other`.
fn alter_domain(c: &mut Cursor<'_>) -> Option<DdlKind> {
    let name = c.read_name()?;
    if let Some(kind) = rename_to(c, "ALTER DOMAIN", &name) {
        return Some(kind);
    }
    if c.eat("ADD") {
        let not_valid = c.rest_has("NOT", Some("VALID"), true);
        return Some(DdlKind::AlterDomainAddConstraint { name, not_valid });
    }
    Some(other("ALTER DOMAIN"))
}

#[cfg(test)]
mod tests {
    use super::super::tests::*;
    use super::*;

    #[test]
    fn alter_index_forms() {
        let ai = |name: &str, action: &str| DdlKind::AlterIndex {
            name: n(name),
            action: action.to_owned(),
        };
        check(&[
            ("ALTER INDEX i RENAME TO j", ai("i", "RENAME")),
            (
                "ALTER INDEX IF EXISTS s.i SET TABLESPACE fast",
                ai("s.i", "SET TABLESPACE"),
            ),
            (
                "ALTER INDEX parent_idx ATTACH PARTITION child_idx",
                ai("parent_idx", "ATTACH PARTITION"),
            ),
            ("ALTER INDEX i SET (fillfactor = 80)", ai("i", "SET")),
            ("ALTER INDEX i RESET (fillfactor)", ai("i", "RESET")),
            (
                "ALTER INDEX i ALTER COLUMN 2 SET STATISTICS 1000",
                ai("i", "ALTER COLUMN"),
            ),
            (
                "ALTER INDEX i ALTER 1 SET STATISTICS 10",
                ai("i", "ALTER COLUMN"),
            ),
            (
                "ALTER INDEX i DEPENDS ON EXTENSION e",
                ai("i", "DEPENDS ON EXTENSION"),
            ),
            (
                "ALTER INDEX i NO DEPENDS ON EXTENSION e",
                ai("i", "DEPENDS ON EXTENSION"),
            ),
            (
                "ALTER INDEX ALL IN TABLESPACE a OWNED BY r SET TABLESPACE b NOWAIT",
                ai("all", "ALL IN TABLESPACE"),
            ),
        ]);
    }
}

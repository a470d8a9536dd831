//! `DROP …` for the fallback classifier: the object kinds and the forms a rule decides on
//! (`DROP INDEX`, `DROP TABLE`), with their `CASCADE | RESTRICT`.

use super::{Cursor, drop_behavior, other};
use crate::sql::lexer::TokenKind;
use crate::sql::statement::{DdlKind, DropObject};

/// The object kinds of PostgreSQL's DROP commands recognised by their leading words:
/// (words, command tag). DROP INDEX, DROP TABLE and DROP DATABASE have their own kinds.
const DROP_KINDS: &[(&[&str], &str)] = &[
    (&["ACCESS", "METHOD"], "DROP ACCESS METHOD"),
    (&["AGGREGATE"], "DROP AGGREGATE"),
    (&["CAST"], "DROP CAST"),
    (&["COLLATION"], "DROP COLLATION"),
    (&["CONVERSION"], "DROP CONVERSION"),
    (&["DOMAIN"], "DROP DOMAIN"),
    (&["EVENT", "TRIGGER"], "DROP EVENT TRIGGER"),
    (&["EXTENSION"], "DROP EXTENSION"),
    (&["FOREIGN", "DATA", "WRAPPER"], "DROP FOREIGN DATA WRAPPER"),
    (&["FOREIGN", "TABLE"], "DROP FOREIGN TABLE"),
    (&["FUNCTION"], "DROP FUNCTION"),
    (&["GROUP"], "DROP ROLE"),
    (&["LANGUAGE"], "DROP LANGUAGE"),
    (&["PROCEDURAL", "LANGUAGE"], "DROP LANGUAGE"),
    (&["MATERIALIZED", "VIEW"], "DROP MATERIALIZED VIEW"),
    (&["OPERATOR", "CLASS"], "DROP OPERATOR CLASS"),
    (&["OPERATOR", "FAMILY"], "DROP OPERATOR FAMILY"),
    (&["OPERATOR"], "DROP OPERATOR"),
    (&["OWNED"], "DROP OWNED"),
    (&["POLICY"], "DROP POLICY"),
    (&["PROCEDURE"], "DROP PROCEDURE"),
    (&["PUBLICATION"], "DROP PUBLICATION"),
    (&["ROLE"], "DROP ROLE"),
    (&["ROUTINE"], "DROP ROUTINE"),
    (&["RULE"], "DROP RULE"),
    (&["SCHEMA"], "DROP SCHEMA"),
    (&["SEQUENCE"], "DROP SEQUENCE"),
    (&["SERVER"], "DROP SERVER"),
    (&["STATISTICS"], "DROP STATISTICS"),
    (&["SUBSCRIPTION"], "DROP SUBSCRIPTION"),
    (&["TABLESPACE"], "DROP TABLESPACE"),
    (
        &["TEXT", "SEARCH", "CONFIGURATION"],
        "DROP TEXT SEARCH CONFIGURATION",
    ),
    (
        &["TEXT", "SEARCH", "DICTIONARY"],
        "DROP TEXT SEARCH DICTIONARY",
    ),
    (&["TEXT", "SEARCH", "PARSER"], "DROP TEXT SEARCH PARSER"),
    (&["TEXT", "SEARCH", "TEMPLATE"], "DROP TEXT SEARCH TEMPLATE"),
    (&["TRANSFORM"], "DROP TRANSFORM"),
    (&["TRIGGER"], "DROP TRIGGER"),
    (&["TYPE"], "DROP TYPE"),
    (&["USER", "MAPPING"], "DROP USER MAPPING"),
    (&["USER"], "DROP ROLE"),
    (&["VIEW"], "DROP VIEW"),
];

pub(super) fn drop(c: &mut Cursor<'_>) -> Option<DdlKind> {
    if c.eat("INDEX") {
        return drop_index(c);
    }
    if c.eat("TABLE") {
        return drop_table(c);
    }
    if c.eat("DATABASE") {
        return Some(DdlKind::DropDatabase);
    }
    let (_, tag) = DROP_KINDS.iter().find(|(words, _)| c.eat_all(words))?;
    if *tag == "DROP OWNED" {
        c.skip_rest();
        return Some(DdlKind::DropOwned);
    }
    let resolvable = match *tag {
        "DROP FUNCTION" | "DROP PROCEDURE" | "DROP ROUTINE" | "DROP AGGREGATE" => Some(true),
        "DROP TYPE"
        | "DROP DOMAIN"
        | "DROP SCHEMA"
        | "DROP EXTENSION"
        | "DROP VIEW"
        | "DROP MATERIALIZED VIEW"
        | "DROP SEQUENCE" => Some(false),
        _ => None,
    };
    let listed = resolvable.and_then(|functions| drop_objects(&mut c.clone(), functions));
    // CASCADE anywhere at top level (an object called `cascade` included: the stricter reading).
    if c.rest_has("CASCADE", None, true) {
        let (if_exists, objects) = match listed {
            Some((if_exists, objects)) => (if_exists, Some(objects)),
            None => (false, None),
        };
        return Some(DdlKind::DropCascade {
            tag: (*tag).to_owned(),
            if_exists,
            objects,
        });
    }
    Some(other(tag))
}

/// `[ IF EXISTS ] object [, ...] CASCADE` to the last token, each object a name and, for
/// functions, an optional argument list: the objects whose dependents the catalog can count.
/// `None` for anything else (`mood[]`, `t.c%TYPE`, `double precision`, options after CASCADE):
/// then the statement is judged without facts.
fn drop_objects(c: &mut Cursor<'_>, functions: bool) -> Option<(bool, Vec<DropObject>)> {
    // A `U&"…"` name is kept undecoded by `ident_text` (escapes, UESCAPE): looked up as
    // written it would resolve to nothing while the server drops the decoded name.
    let mut scan = c.clone();
    while let Some(t) = scan.next() {
        if t.kind == TokenKind::QuotedIdent && !t.text(c.sql).starts_with(b"\"") {
            return None;
        }
    }
    let if_exists = c.eat_all(&["IF", "EXISTS"]);
    let mut objects = Vec::new();
    loop {
        let name = c.read_name()?;
        let args = functions && c.is_kind(TokenKind::LParen);
        if args {
            c.skip_parens()?;
        }
        objects.push(DropObject { name, args });
        if !c.eat_kind(TokenKind::Comma) {
            break;
        }
    }
    c.expect("CASCADE")?;
    c.expect_end()?;
    (!c.bad).then_some((if_exists, objects))
}

/// `DROP INDEX [ CONCURRENTLY ] [ IF EXISTS ] name [, ...] [ CASCADE | RESTRICT ]` — the safe
/// form of dropping an index, so it must match to the last token.
fn drop_index(c: &mut Cursor<'_>) -> Option<DdlKind> {
    let concurrently = c.eat("CONCURRENTLY");
    let if_exists = c.eat_all(&["IF", "EXISTS"]);
    let names = c.read_names()?;
    let cascade = drop_behavior(c);
    c.expect_end()?;
    Some(DdlKind::DropIndex {
        names,
        concurrently,
        if_exists,
        cascade,
    })
}

/// `DROP TABLE [ IF EXISTS ] name [, ...] [ CASCADE | RESTRICT ]`.
fn drop_table(c: &mut Cursor<'_>) -> Option<DdlKind> {
    c.eat_all(&["IF", "EXISTS"]);
    let names = c.read_names()?;
    let cascade = drop_behavior(c);
    c.expect_end()?;
    Some(DdlKind::DropTable { names, cascade })
}

#[cfg(test)]
mod tests {
    use super::super::tests::*;
    use super::*;

    #[test]
    fn drop_index_forms() {
        let drop = |names: &[&str], concurrently, if_exists, cascade| DdlKind::DropIndex {
            names: names.iter().map(|s| n(s)).collect(),
            concurrently,
            if_exists,
            cascade,
        };
        check(&[
            (
                "DROP INDEX CONCURRENTLY idx",
                drop(&["idx"], true, false, false),
            ),
            (
                "DROP INDEX CONCURRENTLY IF EXISTS s.\"Idx\"",
                drop(&["s.Idx"], true, true, false),
            ),
            (
                "DROP INDEX a, b CASCADE",
                drop(&["a", "b"], false, false, true),
            ),
            ("DROP INDEX a RESTRICT", drop(&["a"], false, false, false)),
            (
                "/* c */ drop /* c */ index /* c */ concurrently \"My Idx\"",
                drop(&["My Idx"], true, false, false),
            ),
            (
                "DrOp\n\tInDeX -- why\n IF EXISTS Public.IDX",
                drop(&["public.idx"], false, true, false),
            ),
            // An index named `if` (IF is unreserved).
            ("DROP INDEX if", drop(&["if"], false, false, false)),
        ]);
    }
}

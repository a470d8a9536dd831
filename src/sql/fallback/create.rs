//! `CREATE …` for the fallback classifier: the modifiers between `CREATE` and the object kind,
//! the kinds recognised by their leading words, and the forms the rules look into (index,
//! table, function, type, rule, domain).

use super::{Cursor, Kw, lossy, other};
use crate::sql::lexer::TokenKind;
use crate::sql::statement::{DdlKind, Name};

// Modifiers between CREATE and the object kind, as a bit set.
const OR_REPLACE: u16 = 1;
const TEMP: u16 = 1 << 1;
const UNLOGGED: u16 = 1 << 2;
const RECURSIVE: u16 = 1 << 3;
const UNIQUE: u16 = 1 << 4;
const TRUSTED: u16 = 1 << 5;
const PROCEDURAL: u16 = 1 << 6;
const DEFAULT: u16 = 1 << 7;
const CONSTRAINT: u16 = 1 << 8;

/// `CREATE` object kinds recognised by their leading words: (words, command tag, modifiers the
/// grammar allows). Longer word sequences come before their prefixes.
const CREATE_KINDS: &[(&[&str], &str, u16)] = &[
    (&["ACCESS", "METHOD"], "CREATE ACCESS METHOD", 0),
    (&["AGGREGATE"], "CREATE AGGREGATE", OR_REPLACE),
    (&["CAST"], "CREATE CAST", 0),
    (&["COLLATION"], "CREATE COLLATION", 0),
    (&["CONVERSION"], "CREATE CONVERSION", DEFAULT),
    (&["DATABASE"], "CREATE DATABASE", 0),
    (&["EVENT", "TRIGGER"], "CREATE EVENT TRIGGER", 0),
    (&["EXTENSION"], "CREATE EXTENSION", 0),
    (
        &["FOREIGN", "DATA", "WRAPPER"],
        "CREATE FOREIGN DATA WRAPPER",
        0,
    ),
    (&["FOREIGN", "TABLE"], "CREATE FOREIGN TABLE", 0),
    (&["GROUP"], "CREATE ROLE", 0),
    (
        &["LANGUAGE"],
        "CREATE LANGUAGE",
        OR_REPLACE | TRUSTED | PROCEDURAL,
    ),
    (
        &["MATERIALIZED", "VIEW"],
        "CREATE MATERIALIZED VIEW",
        UNLOGGED,
    ),
    (&["OPERATOR", "CLASS"], "CREATE OPERATOR CLASS", 0),
    (&["OPERATOR", "FAMILY"], "CREATE OPERATOR FAMILY", 0),
    (&["OPERATOR"], "CREATE OPERATOR", 0),
    (&["POLICY"], "CREATE POLICY", 0),
    (&["PUBLICATION"], "CREATE PUBLICATION", 0),
    (&["ROLE"], "CREATE ROLE", 0),
    (&["RULE"], "CREATE RULE", OR_REPLACE),
    (&["SCHEMA"], "CREATE SCHEMA", 0),
    (&["SEQUENCE"], "CREATE SEQUENCE", TEMP | UNLOGGED),
    (&["SERVER"], "CREATE SERVER", 0),
    (&["STATISTICS"], "CREATE STATISTICS", 0),
    (&["SUBSCRIPTION"], "CREATE SUBSCRIPTION", 0),
    (&["TABLESPACE"], "CREATE TABLESPACE", 0),
    (
        &["TEXT", "SEARCH", "CONFIGURATION"],
        "CREATE TEXT SEARCH CONFIGURATION",
        0,
    ),
    (
        &["TEXT", "SEARCH", "DICTIONARY"],
        "CREATE TEXT SEARCH DICTIONARY",
        0,
    ),
    (
        &["TEXT", "SEARCH", "PARSER"],
        "CREATE TEXT SEARCH PARSER",
        0,
    ),
    (
        &["TEXT", "SEARCH", "TEMPLATE"],
        "CREATE TEXT SEARCH TEMPLATE",
        0,
    ),
    (&["TRANSFORM"], "CREATE TRANSFORM", OR_REPLACE),
    (&["TRIGGER"], "CREATE TRIGGER", OR_REPLACE | CONSTRAINT),
    (&["USER", "MAPPING"], "CREATE USER MAPPING", 0),
    (&["USER"], "CREATE ROLE", 0),
    (&["VIEW"], "CREATE VIEW", OR_REPLACE | TEMP | RECURSIVE),
];

/// `Some(())` if every modifier in `mods` is one of `allowed`.
fn only(mods: u16, allowed: u16) -> Option<()> {
    (mods & !allowed == 0).then_some(())
}

/// The modifiers gram.y allows after CREATE, in its order: `OR REPLACE`,
/// `[ GLOBAL | LOCAL ] { TEMP | TEMPORARY } | UNLOGGED`, `RECURSIVE`, `UNIQUE`, `TRUSTED`,
/// `PROCEDURAL`, `DEFAULT` (conversion), `CONSTRAINT` (trigger).
fn create_modifiers(c: &mut Cursor<'_>) -> u16 {
    let mut mods = 0;
    if c.eat_all(&["OR", "REPLACE"]) {
        mods |= OR_REPLACE;
    }
    if c.eat_all(&["GLOBAL", "TEMP"])
        || c.eat_all(&["GLOBAL", "TEMPORARY"])
        || c.eat_all(&["LOCAL", "TEMP"])
        || c.eat_all(&["LOCAL", "TEMPORARY"])
        || c.eat("TEMP")
        || c.eat("TEMPORARY")
    {
        mods |= TEMP;
    } else if c.eat("UNLOGGED") {
        mods |= UNLOGGED;
    }
    for (kw, bit) in [
        ("RECURSIVE", RECURSIVE),
        ("UNIQUE", UNIQUE),
        ("TRUSTED", TRUSTED),
        ("PROCEDURAL", PROCEDURAL),
        ("DEFAULT", DEFAULT),
        ("CONSTRAINT", CONSTRAINT),
    ] {
        if c.eat(kw) {
            mods |= bit;
        }
    }
    mods
}

pub(super) fn create(c: &mut Cursor<'_>) -> Option<DdlKind> {
    let mods = create_modifiers(c);
    if c.eat("INDEX") {
        only(mods, UNIQUE)?;
        return create_index(c, mods & UNIQUE != 0);
    }
    if c.eat("TABLE") {
        only(mods, TEMP | UNLOGGED)?;
        return create_table(c, mods & TEMP != 0);
    }
    if c.eat("FUNCTION") {
        only(mods, OR_REPLACE)?;
        return Some(create_function(c));
    }
    if c.eat("PROCEDURE") {
        only(mods, OR_REPLACE)?;
        return Some(create_function(c));
    }
    if c.eat("TYPE") {
        only(mods, 0)?;
        return create_type(c);
    }
    if c.eat("DOMAIN") {
        only(mods, 0)?;
        return create_domain(c);
    }
    if c.eat("RULE") {
        only(mods, OR_REPLACE)?;
        return create_rule(c);
    }
    let (_, tag, allowed) = CREATE_KINDS.iter().find(|(words, _, _)| c.eat_all(words))?;
    only(mods, *allowed)?;
    Some(other(tag))
}

/// `CREATE [ UNIQUE ] INDEX [ CONCURRENTLY ] [ [ IF NOT EXISTS ] name ] ON [ ONLY ] table
/// [ USING method ] ( element [, ...] ) [ INCLUDE (…) ] [ NULLS [ NOT ] DISTINCT ] [ WITH (…) ]
/// [ TABLESPACE ts ] [ WHERE predicate ]`. The index name is a bare `ColId` (it always lives in
/// the table's schema).
fn create_index(c: &mut Cursor<'_>, unique: bool) -> Option<DdlKind> {
    let concurrently = c.eat("CONCURRENTLY");
    let if_not_exists = c.eat_all(&["IF", "NOT", "EXISTS"]);
    let name = if c.is("ON") {
        None
    } else {
        Some(Name::bare(&c.read_ident()?))
    };
    if if_not_exists && name.is_none() {
        return None;
    }
    c.expect("ON")?;
    let (table, only) = c.read_relation()?;
    if c.eat("USING") {
        c.read_ident()?;
    }
    let columns = c.skip_parens()?;
    if columns == 0 {
        return None;
    }
    c.skip_rest();
    Some(DdlKind::CreateIndex {
        name,
        table,
        unique,
        concurrently,
        if_not_exists,
        only,
        columns,
    })
}

/// `CREATE [ [ GLOBAL | LOCAL ] { TEMP | TEMPORARY } | UNLOGGED ] TABLE [ IF NOT EXISTS ] name
/// { ( … ) | OF type … | PARTITION OF parent … | [ ( cols ) ] … AS query }`. `references`
/// collects every `REFERENCES target` of the definition (REFERENCES is reserved, so a bare word
/// can only be the foreign-key keyword); a CTAS query after a top-level `AS` is not looked into.
fn create_table(c: &mut Cursor<'_>, temporary: bool) -> Option<DdlKind> {
    let if_not_exists = c.eat_all(&["IF", "NOT", "EXISTS"]);
    let name = c.read_name()?;
    let mut partition_of = None;
    if c.eat_all(&["PARTITION", "OF"]) {
        partition_of = Some(c.read_name()?);
    } else if c.eat("OF") {
        c.read_name()?;
    } else if !(c.is_kind(TokenKind::LParen)
        || ["AS", "USING", "WITH", "WITHOUT", "ON", "TABLESPACE"]
            .iter()
            .any(|kw| c.is(kw)))
    {
        return None;
    }
    let mut references = Vec::new();
    let mut depth = 0usize;
    while let Some(t) = c.next() {
        match t.kind {
            TokenKind::LParen => depth += 1,
            TokenKind::RParen if depth == 0 => return None,
            TokenKind::RParen => depth -= 1,
            _ if depth == 0 && t.is_word(c.sql, "AS") => {
                c.skip_rest();
                break;
            }
            _ if t.is_word(c.sql, "REFERENCES") => references.push(c.read_name()?),
            _ => {}
        }
    }
    if depth != 0 {
        return None;
    }
    Some(DdlKind::CreateTable {
        name,
        temporary,
        partition_of,
        references,
        if_not_exists,
        columns: Vec::new(),
    })
}

/// `CREATE [ OR REPLACE ] { FUNCTION | PROCEDURE } name ( [ args ] ) [ RETURNS … ]
/// { LANGUAGE l | AS 'def' [, 'link'] | sql_body | option } …`, where `sql_body` is
/// `BEGIN ATOMIC … END` or `RETURN expr` (PG 14). The body is the string content or the
/// `BEGIN ATOMIC … END` / `RETURN …` text. A routine whose name or argument list cannot be read is
/// not understood: its body, which would run on every call, is not known to be harmless.
fn create_function(c: &mut Cursor<'_>) -> DdlKind {
    let Some(name) = c.read_name_as(Kw::NonReserved) else {
        return DdlKind::Unknown;
    };
    if !c.is_kind(TokenKind::LParen) || c.skip_parens().is_none() {
        return DdlKind::Unknown;
    }
    let (mut language, mut body) = (None, None);
    while let Some(t) = c.peek() {
        if t.kind == TokenKind::LParen {
            c.skip_parens();
        } else if t.kind == TokenKind::RParen {
            c.bad = true;
            c.next();
        } else if c.eat("LANGUAGE") {
            // A language name ddlgate cannot read would leave the body read as PL/pgSQL.
            let Some(l) = c.read_word_or_sconst() else {
                return DdlKind::Unknown;
            };
            language = Some(l);
        } else if c.eat("AS") {
            // A body ddlgate cannot decode with certainty, or continued by a second literal
            // on the next line (which PostgreSQL joins to the first), is not read in part:
            // the statement is not understood (fail closed).
            let Some(def) = c.read_sconst() else {
                return DdlKind::Unknown;
            };
            if c.is_kind(TokenKind::String) || c.is_kind(TokenKind::DollarString) {
                return DdlKind::Unknown;
            }
            body = body.or(Some(def));
        } else if (t.is_word(c.sql, "BEGIN") && c.is2("ATOMIC")) || t.is_word(c.sql, "RETURN") {
            c.skip_rest();
            body = c.sql.get(t.start..c.last_end).map(lossy);
        } else {
            c.next();
        }
    }
    DdlKind::CreateFunction {
        name,
        language,
        body,
    }
}

/// `CREATE TYPE name AS ENUM ( … )`; every other CREATE TYPE form is `Other`.
fn create_type(c: &mut Cursor<'_>) -> Option<DdlKind> {
    let name = c.read_name()?;
    if c.eat_all(&["AS", "ENUM"]) {
        c.skip_rest();
        return Some(DdlKind::CreateEnum { name });
    }
    Some(other("CREATE TYPE"))
}

/// `CREATE [ OR REPLACE ] RULE name AS ON { SELECT | INSERT | UPDATE | DELETE } TO table
/// [ WHERE condition ] DO [ ALSO | INSTEAD ] { NOTHING | command | ( command ; … ) }`. DO is
/// reserved, so the first top-level DO ends the condition.
fn create_rule(c: &mut Cursor<'_>) -> Option<DdlKind> {
    let name = c.read_ident()?;
    c.expect("AS")?;
    c.expect("ON")?;
    let event = ["SELECT", "INSERT", "UPDATE", "DELETE"]
        .into_iter()
        .find(|e| c.eat(e))?;
    c.expect("TO")?;
    let table = c.read_name()?;
    loop {
        let t = c.peek()?;
        match t.kind {
            TokenKind::LParen => {
                c.skip_parens()?;
            }
            TokenKind::RParen => return None,
            _ if t.is_word(c.sql, "DO") => break,
            _ => {
                c.next();
            }
        }
    }
    c.expect("DO")?;
    let instead = c.eat("INSTEAD");
    if !instead {
        c.eat("ALSO");
    }
    c.skip_rest();
    Some(DdlKind::CreateRule {
        name,
        event: event.to_owned(),
        table,
        instead,
    })
}

/// `CREATE DOMAIN name [ AS ] type [ COLLATE c ] [ DEFAULT expr ] [ constraint … ]`: with a
/// `CHECK` or `NOT NULL` constraint outside parentheses it is `CreateDomainWithConstraint`.
fn create_domain(c: &mut Cursor<'_>) -> Option<DdlKind> {
    let name = c.read_name()?;
    let mut constrained = false;
    while let Some(t) = c.peek() {
        match t.kind {
            TokenKind::LParen => {
                c.skip_parens();
            }
            TokenKind::RParen => return None,
            _ => {
                c.next();
                if t.is_word(c.sql, "CHECK") || (t.is_word(c.sql, "NOT") && c.is("NULL")) {
                    constrained = true;
                }
            }
        }
    }
    Some(if constrained {
        DdlKind::CreateDomainWithConstraint { name }
    } else {
        other("CREATE DOMAIN")
    })
}

#[cfg(test)]
mod tests {
    use super::super::tests::*;
    use super::*;
    use crate::sql::statement::Understood;

    #[test]
    fn create_index_forms() {
        check(&[
            (
                "CREATE INDEX events_idx ON ONLY events (tenant_id)",
                DdlKind::CreateIndex {
                    name: Some(n("events_idx")),
                    table: n("events"),
                    unique: false,
                    concurrently: false,
                    if_not_exists: false,
                    only: true,
                    columns: 1,
                },
            ),
            (
                "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS i ON t USING btree (a, lower(b)) WHERE c",
                DdlKind::CreateIndex {
                    name: Some(n("i")),
                    table: n("t"),
                    unique: true,
                    concurrently: true,
                    if_not_exists: true,
                    only: false,
                    columns: 2,
                },
            ),
            (
                "create index on S.T (a) include (b, c) with (fillfactor = 70) tablespace x",
                DdlKind::CreateIndex {
                    name: None,
                    table: n("s.t"),
                    unique: false,
                    concurrently: false,
                    if_not_exists: false,
                    only: false,
                    columns: 1,
                },
            ),
            (
                "CREATE INDEX CONCURRENTLY \"Ix\" ON t USING gin ((data -> 'k'), (coalesce(a, b)), c)",
                DdlKind::CreateIndex {
                    name: Some(n("Ix")),
                    table: n("t"),
                    unique: false,
                    concurrently: true,
                    if_not_exists: false,
                    only: false,
                    columns: 3,
                },
            ),
        ]);
    }

    #[test]
    fn create_table_forms() {
        let table = |name: &str, temporary, partition_of: Option<&str>, references: &[&str]| {
            DdlKind::CreateTable {
                name: n(name),
                temporary,
                partition_of: partition_of.map(n),
                references: references.iter().map(|r| n(r)).collect(),
                if_not_exists: false,
                columns: Vec::new(),
            }
        };
        let if_not_exists = |kind: DdlKind| match kind {
            DdlKind::CreateTable {
                name,
                temporary,
                partition_of,
                references,
                columns,
                ..
            } => DdlKind::CreateTable {
                name,
                temporary,
                partition_of,
                references,
                if_not_exists: true,
                columns,
            },
            other => other,
        };
        check(&[
            (
                "CREATE TABLE t2 (LIKE users INCLUDING ALL)",
                table("t2", false, None, &[]),
            ),
            (
                "CREATE TABLE IF NOT EXISTS s.orders (id bigint PRIMARY KEY, user_id int REFERENCES users (id), \
                 CONSTRAINT fk FOREIGN KEY (a, b) REFERENCES other.t (a, b) ON DELETE CASCADE)",
                if_not_exists(table("s.orders", false, None, &["users", "other.t"])),
            ),
            ("CREATE TEMP TABLE tt (a int)", table("tt", true, None, &[])),
            (
                "CREATE GLOBAL TEMPORARY TABLE tt (a int)",
                table("tt", true, None, &[]),
            ),
            (
                "CREATE UNLOGGED TABLE u (a int) WITH (fillfactor = 50)",
                table("u", false, None, &[]),
            ),
            (
                "CREATE TABLE m_2024 PARTITION OF m FOR VALUES FROM ('2024-01-01') TO ('2025-01-01')",
                table("m_2024", false, Some("m"), &[]),
            ),
            (
                "CREATE TABLE p PARTITION OF m DEFAULT",
                table("p", false, Some("m"), &[]),
            ),
            (
                "CREATE TABLE typed OF my_type (PRIMARY KEY (id))",
                table("typed", false, None, &[]),
            ),
            (
                "CREATE TABLE c AS SELECT 1 AS references FROM x",
                table("c", false, None, &[]),
            ),
            (
                "CREATE TABLE c (a, b) AS SELECT 1, 2 WITH NO DATA",
                table("c", false, None, &[]),
            ),
            (
                "CREATE TABLE g (a int, b int GENERATED ALWAYS AS (a * 2) STORED) PARTITION BY RANGE (a)",
                table("g", false, None, &[]),
            ),
        ]);
    }

    #[test]
    fn create_function_forms() {
        let func =
            |name: &str, language: Option<&str>, body: Option<&str>| DdlKind::CreateFunction {
                name: n(name),
                language: language.map(str::to_owned),
                body: body.map(str::to_owned),
            };
        check(&[
            (
                "CREATE OR REPLACE FUNCTION s.f(a int, b text DEFAULT 'x') RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$",
                func("s.f", Some("plpgsql"), Some(" BEGIN RETURN NEW; END ")),
            ),
            (
                "CREATE FUNCTION add(int, int) RETURNS int AS 'select $1 + $2' LANGUAGE SQL IMMUTABLE",
                func("add", Some("sql"), Some("select $1 + $2")),
            ),
            (
                "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT 2; END",
                func(
                    "f",
                    Some("sql"),
                    Some("BEGIN ATOMIC SELECT 1; SELECT 2; END"),
                ),
            ),
            (
                "CREATE FUNCTION f(a int) RETURNS int LANGUAGE sql IMMUTABLE RETURN a + 1",
                func("f", Some("sql"), Some("RETURN a + 1")),
            ),
            (
                "CREATE PROCEDURE p() LANGUAGE c AS 'lib', 'sym'",
                func("p", Some("c"), Some("lib")),
            ),
            (
                "CREATE FUNCTION f() RETURNS TABLE (a int, b text) SET search_path = a, b AS 'x' LANGUAGE sql",
                func("f", Some("sql"), Some("x")),
            ),
            (
                "CREATE FUNCTION left(t text) RETURNS text AS 'x' LANGUAGE sql",
                func("left", Some("sql"), Some("x")),
            ),
        ]);
        // Unreadable name or arguments: the body is not read, so the statement is not
        // understood.
        for sql in [
            "CREATE FUNCTION select() AS 'x'",
            "CREATE PROCEDURE p LANGUAGE sql",
        ] {
            assert_eq!(classify_str(sql).understood, Understood::Unknown, "{sql}");
        }
    }
}

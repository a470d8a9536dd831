//! Maintenance commands for the fallback classifier: `REINDEX`, `CLUSTER`, `VACUUM` and
//! `REFRESH MATERIALIZED VIEW`.

use super::{Cursor, ident_is};
use crate::sql::lexer::TokenKind;
use crate::sql::statement::{DdlKind, Name, ReindexTarget};

/// `REINDEX [ ( option [, ...] ) ] { INDEX | TABLE | SCHEMA | DATABASE | SYSTEM }
/// [ CONCURRENTLY ] [ name ]`. CONCURRENTLY may also be an option (PG 14:
/// `REINDEX (CONCURRENTLY) TABLE t`); the name is optional for DATABASE and SYSTEM (PG 16).
pub(super) fn reindex(c: &mut Cursor<'_>) -> Option<DdlKind> {
    let mut concurrently = false;
    if c.is_kind(TokenKind::LParen) {
        let sql = c.sql;
        // Only an explicit true value counts: anything else is not concurrent (or an error).
        c.utility_options(|name, value| {
            if ident_is(sql, name, "concurrently") {
                concurrently = value == Some(true);
            }
        })?;
    }
    let target = [
        ("INDEX", ReindexTarget::Index),
        ("TABLE", ReindexTarget::Table),
        ("SCHEMA", ReindexTarget::Schema),
        ("DATABASE", ReindexTarget::Database),
        ("SYSTEM", ReindexTarget::System),
    ]
    .into_iter()
    .find(|(kw, _)| c.eat(kw))?
    .1;
    concurrently |= c.eat("CONCURRENTLY");
    let name = match target {
        ReindexTarget::Index | ReindexTarget::Table => Some(c.read_name()?),
        ReindexTarget::Schema => Some(Name::bare(&c.read_ident()?)),
        ReindexTarget::Database | ReindexTarget::System if c.at_end() => None,
        ReindexTarget::Database | ReindexTarget::System => Some(Name::bare(&c.read_ident()?)),
    };
    c.expect_end()?;
    Some(DdlKind::Reindex {
        target,
        name,
        concurrently,
    })
}

/// `CLUSTER [ ( option [, ...] ) ] [ table [ USING index ] ]`, `CLUSTER [ VERBOSE ] [ table
/// [ USING index ] ]` and the pre-8.3 `CLUSTER [ VERBOSE ] index ON table`.
pub(super) fn cluster(c: &mut Cursor<'_>) -> Option<DdlKind> {
    if c.is_kind(TokenKind::LParen) {
        c.utility_options(|_, _| {})?;
    } else {
        c.eat("VERBOSE");
    }
    if c.at_end() {
        return Some(DdlKind::Cluster { table: None });
    }
    let first = c.read_name()?;
    let table = if c.eat("ON") {
        c.read_name()?
    } else {
        if c.eat("USING") {
            c.read_ident()?;
        }
        first
    };
    c.expect_end()?;
    Some(DdlKind::Cluster { table: Some(table) })
}

/// `VACUUM [ FULL ] [ FREEZE ] [ VERBOSE ] [ ANALYZE ] [ table [ ( cols ) ] [, ...] ]` and
/// `VACUUM ( option [, ...] ) [ … ]`. The last FULL option wins, as in `ExecVacuum`.
pub(super) fn vacuum(c: &mut Cursor<'_>) -> Option<DdlKind> {
    let mut full = false;
    if c.is_kind(TokenKind::LParen) {
        let sql = c.sql;
        // Anything but an explicit false value counts as FULL (the stricter reading).
        c.utility_options(|name, value| {
            if ident_is(sql, name, "full") {
                full = value != Some(false);
            }
        })?;
    } else {
        full = c.eat("FULL");
        c.eat("FREEZE");
        c.eat("VERBOSE");
        let _ = c.eat("ANALYZE") || c.eat("ANALYSE");
    }
    let mut tables = Vec::new();
    if !c.at_end() {
        loop {
            // `relation_expr` (ONLY: PG 18) with an optional column list.
            tables.push(c.read_relation()?.0);
            if c.is_kind(TokenKind::LParen) {
                c.skip_parens()?;
            }
            if !c.eat_kind(TokenKind::Comma) {
                break;
            }
        }
    }
    c.expect_end()?;
    Some(DdlKind::Vacuum { full, tables })
}

/// `REFRESH MATERIALIZED VIEW [ CONCURRENTLY ] name [ WITH [ NO ] DATA ]`.
pub(super) fn refresh(c: &mut Cursor<'_>) -> Option<DdlKind> {
    c.expect("MATERIALIZED")?;
    c.expect("VIEW")?;
    let concurrently = c.eat("CONCURRENTLY");
    let name = c.read_name()?;
    if c.eat("WITH") {
        c.eat("NO");
        c.expect("DATA")?;
    }
    c.expect_end()?;
    Some(DdlKind::RefreshMaterializedView { name, concurrently })
}

#[cfg(test)]
mod tests {
    use super::super::tests::reindex;
    use super::super::tests::*;
    use super::*;

    #[test]
    fn reindex_forms() {
        use ReindexTarget::*;
        check(&[
            ("REINDEX INDEX idx", reindex(Index, Some("idx"), false)),
            (
                "REINDEX INDEX CONCURRENTLY idx",
                reindex(Index, Some("idx"), true),
            ),
            (
                "REINDEX TABLE CONCURRENTLY public.users",
                reindex(Table, Some("public.users"), true),
            ),
            (
                "REINDEX (VERBOSE, CONCURRENTLY) TABLE t",
                reindex(Table, Some("t"), true),
            ),
            (
                "REINDEX (CONCURRENTLY, VERBOSE) TABLE t",
                reindex(Table, Some("t"), true),
            ),
            (
                "reindex (concurrently true) table t",
                reindex(Table, Some("t"), true),
            ),
            (
                "REINDEX (CONCURRENTLY off) TABLE t",
                reindex(Table, Some("t"), false),
            ),
            (
                "REINDEX (TABLESPACE fast, VERBOSE) INDEX i",
                reindex(Index, Some("i"), false),
            ),
            (
                "REINDEX (VERBOSE) TABLE t",
                reindex(Table, Some("t"), false),
            ),
            (
                "REINDEX SCHEMA CONCURRENTLY app",
                reindex(Schema, Some("app"), true),
            ),
            (
                "REINDEX DATABASE mydb",
                reindex(Database, Some("mydb"), false),
            ),
            ("REINDEX DATABASE", reindex(Database, None, false)),
            ("REINDEX SYSTEM", reindex(System, None, false)),
            ("REINDEX TABLE db.s.t", reindex(Table, Some("s.t"), false)),
        ]);
    }

    #[test]
    fn cluster_vacuum_analyze() {
        let vacuum = |full, tables: &[&str]| DdlKind::Vacuum {
            full,
            tables: tables.iter().map(|t| n(t)).collect(),
        };
        let cluster = |t: Option<&str>| DdlKind::Cluster { table: t.map(n) };
        check(&[
            ("CLUSTER users USING users_pkey", cluster(Some("users"))),
            ("CLUSTER", cluster(None)),
            ("CLUSTER VERBOSE", cluster(None)),
            ("CLUSTER VERBOSE s.users", cluster(Some("s.users"))),
            ("CLUSTER (VERBOSE) users USING i", cluster(Some("users"))),
            ("CLUSTER users_pkey ON users", cluster(Some("users"))),
            ("VACUUM (VERBOSE, ANALYZE) users", vacuum(false, &["users"])),
            ("VACUUM (FULL) t", vacuum(true, &["t"])),
            ("VACUUM (FULL false) t", vacuum(false, &["t"])),
            ("VACUUM (FULL off, VERBOSE) t", vacuum(false, &["t"])),
            ("VACUUM (FULL 0) t", vacuum(false, &["t"])),
            ("VACUUM (FULL 'false') t", vacuum(false, &["t"])),
            ("VACUUM (FULL true) t", vacuum(true, &["t"])),
            ("VACUUM (FULL on) t", vacuum(true, &["t"])),
            ("VACUUM (FULL 1) t", vacuum(true, &["t"])),
            ("VACUUM (\"full\") t", vacuum(true, &["t"])),
            ("VACUUM FULL t", vacuum(true, &["t"])),
            (
                "VACUUM FULL FREEZE VERBOSE ANALYZE t (a, b), s.u",
                vacuum(true, &["t", "s.u"]),
            ),
            ("VACUUM", vacuum(false, &[])),
            ("VACUUM ANALYZE", vacuum(false, &[])),
            (
                "VACUUM (PARALLEL 4, INDEX_CLEANUP off) ONLY t",
                vacuum(false, &["t"]),
            ),
            ("ANALYZE", other_tag("ANALYZE")),
            ("ANALYZE (VERBOSE) users (a)", other_tag("ANALYZE")),
            ("analyse verbose users", other_tag("ANALYZE")),
        ]);
    }
}

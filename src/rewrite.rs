//! Rewrites: the client's own statement text, edited into its safe form.
//!
//! Rewrites splice tokens into the original bytes instead of re-printing an AST, so comments,
//! quoting, spacing and the client's encoding survive exactly; only the inserted keyword is new.
//! Every rewrite is then understood again and re-checked in the same context: if the result does
//! not parse into the expected statement, or a rule still objects to it, the rewrite is refused
//! and the policy blocks instead. A rewrite never silently changes what the client asked for.

use crate::rules::{self, Rewrite};
use crate::sql::lexer::{LexOptions, Token, TokenKind};
use crate::sql::parse;
use crate::sql::statement::{AlterOp, Ddl, DdlKind};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RewriteError {
    #[error("ddlgate found no place to insert CONCURRENTLY")]
    NoInsertionPoint,
    #[error("the rewritten statement did not parse as the same command")]
    Reparse,
    #[error("the rewritten statement is still flagged by `{0}`")]
    StillFlagged(&'static str),
}

/// Applies `rewrite` to `sql[start..end]` (a statement understood as `ddl`) and returns the new
/// statement text with the statement understood from it. `ctx` is the context the statement
/// will run in; the result is parsed and re-checked in it, and that parse is handed back so
/// nothing parses the new text again.
pub fn apply(
    sql: &[u8],
    start: usize,
    end: usize,
    lex: LexOptions,
    ddl: &Ddl,
    rewrite: Rewrite,
    ctx: &rules::Context,
) -> Result<(Vec<u8>, Ddl), RewriteError> {
    let tokens = crate::sql::lexer::tokens(sql, start, end, lex);
    apply_tokens(sql, &tokens, start, end, lex, ddl, rewrite, ctx)
}

/// [`apply`] over the statement's tokens (those of `sql[start..end]`, lexed once by the
/// caller). The new text is a new statement: it is lexed once, and that one pass serves its
/// parse and re-check.
#[allow(clippy::too_many_arguments)]
pub fn apply_tokens(
    sql: &[u8],
    tokens: &[Token],
    start: usize,
    end: usize,
    lex: LexOptions,
    ddl: &Ddl,
    rewrite: Rewrite,
    ctx: &rules::Context,
) -> Result<(Vec<u8>, Ddl), RewriteError> {
    match rewrite {
        Rewrite::Concurrently => {}
        Rewrite::Guarded => return guarded(sql, tokens, start, end, lex, ddl, ctx),
        // Multi-step rewrites are executed by the session (`crate::recipe`), not spliced.
        Rewrite::Steps => return Err(RewriteError::NoInsertionPoint),
    }
    let words: Vec<Token> = tokens
        .iter()
        .filter(|t| t.start >= start && t.start < end && !t.is_comment())
        .copied()
        .collect();
    let at = concurrently_insertion_point(sql, &words, &ddl.kind)
        .ok_or(RewriteError::NoInsertionPoint)?;
    let mut out = Vec::with_capacity(end - start + 13);
    out.extend_from_slice(&sql[start..at]);
    out.extend_from_slice(b" CONCURRENTLY");
    out.extend_from_slice(&sql[at..end]);

    let new_tokens = crate::sql::lexer::tokens(&out, 0, out.len(), lex);
    let again = parse::understand_tokens(&out, &new_tokens, 0, out.len(), lex);
    if !became_concurrent(&ddl.kind, &again.kind) {
        return Err(RewriteError::Reparse);
    }
    if let Some(f) = rules::check(&again, ctx).into_iter().next() {
        return Err(RewriteError::StillFlagged(f.rule));
    }
    Ok((out, again))
}

/// [`Rewrite::Guarded`]: `DROP INDEX` as written, with a `CONCURRENTLY` the client wrote taken
/// out (with the whitespace before it); the guard then runs it. The new text must parse as the
/// same drop without `CONCURRENTLY`, and no rule may object to it other than with this same
/// rewrite (the plain drop of a partitioned index is itself "run it guarded").
fn guarded(
    sql: &[u8],
    tokens: &[Token],
    start: usize,
    end: usize,
    lex: LexOptions,
    ddl: &Ddl,
    ctx: &rules::Context,
) -> Result<(Vec<u8>, Ddl), RewriteError> {
    let DdlKind::DropIndex {
        names,
        if_exists,
        cascade,
        concurrently,
    } = &ddl.kind
    else {
        return Err(RewriteError::NoInsertionPoint);
    };
    let words: Vec<&Token> = tokens
        .iter()
        .filter(|t| t.start >= start && t.start < end && !t.is_comment())
        .collect();
    let out = if *concurrently {
        // DROP INDEX CONCURRENTLY: the third word.
        let c = words
            .get(2)
            .filter(|t| {
                words.first().is_some_and(|w| w.is_word(sql, "DROP"))
                    && words.get(1).is_some_and(|w| w.is_word(sql, "INDEX"))
                    && t.is_word(sql, "CONCURRENTLY")
            })
            .ok_or(RewriteError::NoInsertionPoint)?;
        let cut = words[1].end;
        let mut out = Vec::with_capacity(end - start);
        out.extend_from_slice(&sql[start..cut]);
        out.extend_from_slice(&sql[c.end..end]);
        out
    } else {
        sql[start..end].to_vec()
    };
    let new_tokens = crate::sql::lexer::tokens(&out, 0, out.len(), lex);
    let again = parse::understand_tokens(&out, &new_tokens, 0, out.len(), lex);
    match &again.kind {
        DdlKind::DropIndex {
            names: n2,
            if_exists: i2,
            cascade: c2,
            concurrently: false,
        } if (names, if_exists, cascade) == (n2, i2, c2) => {}
        _ => return Err(RewriteError::Reparse),
    }
    if let Some(f) = rules::check(&again, ctx)
        .into_iter()
        .find(|f| f.rewrite != Some(Rewrite::Guarded))
    {
        return Err(RewriteError::StillFlagged(f.rule));
    }
    Ok((out, again))
}

/// The rewritten statement is the original one with `concurrently` set, nothing else changed.
fn became_concurrent(before: &DdlKind, after: &DdlKind) -> bool {
    match (before, after) {
        (
            DdlKind::CreateIndex {
                name,
                table,
                unique,
                if_not_exists,
                only,
                columns,
                ..
            },
            DdlKind::CreateIndex {
                name: n2,
                table: t2,
                unique: u2,
                if_not_exists: i2,
                only: o2,
                columns: c2,
                concurrently: true,
            },
        ) => (name, table, unique, if_not_exists, only, columns) == (n2, t2, u2, i2, o2, c2),
        (
            DdlKind::DropIndex {
                names,
                if_exists,
                cascade,
                ..
            },
            DdlKind::DropIndex {
                names: n2,
                if_exists: i2,
                cascade: c2,
                concurrently: true,
            },
        ) => (names, if_exists, cascade) == (n2, i2, c2),
        (
            DdlKind::Reindex { target, name, .. },
            DdlKind::Reindex {
                target: t2,
                name: n2,
                concurrently: true,
            },
        ) => (target, name) == (t2, n2),
        (
            DdlKind::RefreshMaterializedView { name, .. },
            DdlKind::RefreshMaterializedView {
                name: n2,
                concurrently: true,
            },
        ) => name == n2,
        (
            DdlKind::AlterTable { name, ops, .. },
            DdlKind::AlterTable {
                name: n2, ops: o2, ..
            },
        ) => {
            name == n2
                && ops.len() == o2.len()
                && ops.iter().zip(o2).all(|(a, b)| match (a, b) {
                    (
                        AlterOp::DetachPartition { partition, .. },
                        AlterOp::DetachPartition {
                            partition: p2,
                            concurrently: true,
                        },
                    ) => partition == p2,
                    (a, b) => a == b,
                })
        }
        _ => false,
    }
}

/// Where `CONCURRENTLY` goes: right after `INDEX` in CREATE/DROP INDEX, after the target
/// keyword in REINDEX, after the partition name in DETACH PARTITION.
fn concurrently_insertion_point(sql: &[u8], tokens: &[Token], kind: &DdlKind) -> Option<usize> {
    let word = |i: usize, kw: &str| tokens.get(i).is_some_and(|t| t.is_word(sql, kw));
    match kind {
        DdlKind::CreateIndex { .. } | DdlKind::DropIndex { .. } => {
            // CREATE [UNIQUE] INDEX | DROP INDEX: the first INDEX keyword.
            let i = tokens
                .iter()
                .take(3)
                .position(|t| t.is_word(sql, "INDEX"))?;
            Some(tokens[i].end)
        }
        DdlKind::Reindex { .. } => {
            // REINDEX [ ( options ) ] { INDEX | TABLE | SCHEMA | DATABASE } name
            let mut i = 1;
            if tokens.get(i)?.kind == TokenKind::LParen {
                let mut depth = 0usize;
                while let Some(t) = tokens.get(i) {
                    match t.kind {
                        TokenKind::LParen => depth += 1,
                        TokenKind::RParen => depth = depth.saturating_sub(1),
                        _ => {}
                    }
                    i += 1;
                    if depth == 0 {
                        break;
                    }
                }
            }
            ["INDEX", "TABLE", "SCHEMA", "DATABASE"]
                .iter()
                .any(|kw| word(i, kw))
                .then(|| tokens[i].end)
        }
        DdlKind::RefreshMaterializedView { .. } => {
            // REFRESH MATERIALIZED VIEW name: after VIEW.
            (word(0, "REFRESH") && word(1, "MATERIALIZED") && word(2, "VIEW"))
                .then(|| tokens[2].end)
        }
        DdlKind::AlterTable { .. } => {
            // … DETACH PARTITION name: after the (possibly qualified) name.
            let i = (0..tokens.len()).find(|&i| word(i, "DETACH") && word(i + 1, "PARTITION"))?;
            let mut j = i + 2;
            loop {
                let t = tokens.get(j)?;
                if !matches!(t.kind, TokenKind::Word | TokenKind::QuotedIdent) {
                    return None;
                }
                if tokens
                    .get(j + 1)
                    .is_some_and(|d| d.kind == TokenKind::Operator && d.text(sql) == b".")
                {
                    j += 2;
                } else {
                    return Some(t.end);
                }
            }
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::testing::{Ctx, understand};

    fn rewrite(sql: &str) -> Result<String, RewriteError> {
        let ddl = understand(sql);
        let ctx = Ctx::default();
        apply(
            sql.as_bytes(),
            0,
            sql.len(),
            LexOptions::default(),
            &ddl,
            Rewrite::Concurrently,
            &ctx.get(),
        )
        .map(|(b, _)| String::from_utf8(b).expect("utf-8"))
    }

    #[test]
    fn guarded_drops_lose_only_concurrently() {
        use crate::catalog::testing::{facts, table};
        use crate::catalog::{RelKind, Relation};
        use crate::sql::statement::Name;
        // Re-checked with the catalog's word that the index is a partitioned one.
        let guarded = |sql: &str| {
            let ddl = understand(sql);
            let asked = match &ddl.kind {
                DdlKind::DropIndex { names, .. } => names[0].clone(),
                _ => Name::bare("t"),
            };
            let ctx = Ctx {
                catalog: Some(facts(
                    Relation {
                        asked,
                        kind: Some(RelKind::PartitionedIndex),
                        ..table("ev", 1_000_000, 1 << 30)
                    },
                    vec![],
                )),
                ..Ctx::default()
            };
            apply(
                sql.as_bytes(),
                0,
                sql.len(),
                LexOptions::default(),
                &ddl,
                Rewrite::Guarded,
                &ctx.get(),
            )
            .map(|(new, again)| (String::from_utf8(new).expect("utf8"), again))
        };
        for (sql, expected) in [
            ("DROP INDEX CONCURRENTLY ev_t_idx", "DROP INDEX ev_t_idx"),
            (
                "drop index concurrently if exists s.\"Ev\" RESTRICT",
                "drop index if exists s.\"Ev\" RESTRICT",
            ),
            ("DROP INDEX ev_t_idx", "DROP INDEX ev_t_idx"),
            ("DROP INDEX /* c */ ev_t_idx", "DROP INDEX /* c */ ev_t_idx"),
        ] {
            let (new, again) = guarded(sql).expect(sql);
            assert_eq!(new, expected);
            assert!(
                matches!(
                    again.kind,
                    DdlKind::DropIndex {
                        concurrently: false,
                        ..
                    }
                ),
                "{sql}"
            );
        }
        // The rule still objects to the plain drop with CASCADE: refused.
        assert_eq!(
            guarded("DROP INDEX ev_t_idx CASCADE").map(|(s, _)| s),
            Err(RewriteError::StillFlagged(
                "require-concurrent-index-deletion"
            ))
        );
        // Only DROP INDEX has a guarded form.
        for sql in ["CREATE INDEX i ON t (x)", "REINDEX INDEX i"] {
            assert_eq!(guarded(sql), Err(RewriteError::NoInsertionPoint), "{sql}");
        }
    }

    #[test]
    fn create_index_keeps_comments_and_quoting() {
        assert_eq!(
            rewrite("CREATE INDEX i ON t (x)").as_deref(),
            Ok("CREATE INDEX CONCURRENTLY i ON t (x)")
        );
        assert_eq!(
            rewrite("/* add it */ create unique   index IF NOT EXISTS \"Idx\" on public.\"T\" using btree (lower(\"X\")) -- why").as_deref(),
            Ok("/* add it */ create unique   index CONCURRENTLY IF NOT EXISTS \"Idx\" on public.\"T\" using btree (lower(\"X\")) -- why")
        );
        assert_eq!(
            rewrite("CREATE INDEX ON t (x)").as_deref(),
            Ok("CREATE INDEX CONCURRENTLY ON t (x)")
        );
    }

    #[test]
    fn drop_index_and_reindex() {
        assert_eq!(
            rewrite("DROP INDEX IF EXISTS s.i").as_deref(),
            Ok("DROP INDEX CONCURRENTLY IF EXISTS s.i")
        );
        assert_eq!(
            rewrite("REINDEX INDEX i").as_deref(),
            Ok("REINDEX INDEX CONCURRENTLY i")
        );
        assert_eq!(
            rewrite("REINDEX (VERBOSE) TABLE public.users").as_deref(),
            Ok("REINDEX (VERBOSE) TABLE CONCURRENTLY public.users")
        );
    }

    #[test]
    fn refresh_materialized_view() {
        assert_eq!(
            rewrite("REFRESH /* nightly */ MATERIALIZED VIEW s.\"Totals\" WITH DATA").as_deref(),
            Ok("REFRESH /* nightly */ MATERIALIZED VIEW CONCURRENTLY s.\"Totals\" WITH DATA")
        );
    }

    #[test]
    fn detach_partition() {
        assert_eq!(
            rewrite("ALTER TABLE m DETACH PARTITION public.m_2020").as_deref(),
            Ok("ALTER TABLE m DETACH PARTITION public.m_2020 CONCURRENTLY")
        );
    }

    #[test]
    fn rewrites_are_rechecked_in_context() {
        // Inside a transaction CONCURRENTLY would fail: the re-check refuses the rewrite.
        let sql = "CREATE INDEX i ON t (x)";
        let ctx = Ctx::in_tx();
        let err = apply(
            sql.as_bytes(),
            0,
            sql.len(),
            LexOptions::default(),
            &understand(sql),
            Rewrite::Concurrently,
            &ctx.get(),
        );
        assert_eq!(
            err,
            Err(RewriteError::StillFlagged(
                "ban-concurrent-index-creation-in-transaction"
            ))
        );
        // Nothing to rewrite in a statement of another kind.
        assert_eq!(
            rewrite("CREATE TABLE t (x int)"),
            Err(RewriteError::NoInsertionPoint)
        );
    }
}

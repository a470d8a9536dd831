//! The remaining statement families of the fallback classifier: `LOCK`, `TRUNCATE` and `DO`.

use super::{Cursor, drop_behavior};
use crate::sql::statement::{DdlKind, LockMode};

/// PostgreSQL's lock modes, longest spelling first.
const LOCK_MODES: &[(&[&str], LockMode)] = &[
    (&["ACCESS", "SHARE"], LockMode::AccessShare),
    (&["ACCESS", "EXCLUSIVE"], LockMode::AccessExclusive),
    (&["ROW", "SHARE"], LockMode::RowShare),
    (&["ROW", "EXCLUSIVE"], LockMode::RowExclusive),
    (
        &["SHARE", "UPDATE", "EXCLUSIVE"],
        LockMode::ShareUpdateExclusive,
    ),
    (&["SHARE", "ROW", "EXCLUSIVE"], LockMode::ShareRowExclusive),
    (&["SHARE"], LockMode::Share),
    (&["EXCLUSIVE"], LockMode::Exclusive),
];

/// `LOCK [ TABLE ] [ ONLY ] name [ * ] [, ...] [ IN mode MODE ] [ NOWAIT ]`; the default mode
/// is ACCESS EXCLUSIVE.
pub(super) fn lock(c: &mut Cursor<'_>) -> Option<DdlKind> {
    c.eat("TABLE");
    let tables = c.read_relations()?;
    let mut mode = LockMode::AccessExclusive;
    if c.eat("IN") {
        mode = LOCK_MODES.iter().find(|(words, _)| c.eat_all(words))?.1;
        c.expect("MODE")?;
    }
    c.eat("NOWAIT");
    c.expect_end()?;
    Some(DdlKind::Lock { tables, mode })
}

/// `TRUNCATE [ TABLE ] [ ONLY ] name [ * ] [, ...] [ RESTART IDENTITY | CONTINUE IDENTITY ]
/// [ CASCADE | RESTRICT ]`.
pub(super) fn truncate(c: &mut Cursor<'_>) -> Option<DdlKind> {
    c.eat("TABLE");
    let names = c.read_relations()?;
    if c.eat("RESTART") || c.eat("CONTINUE") {
        c.expect("IDENTITY")?;
    }
    let cascade = drop_behavior(c);
    c.expect_end()?;
    Some(DdlKind::Truncate { names, cascade })
}

/// `DO [ LANGUAGE l ] code` or `DO code [ LANGUAGE l ]` (gram.y's `dostmt_opt_list`: exactly one
/// code string, at most one LANGUAGE). Two adjacent string tokens (a literal continued across a
/// newline) are Unknown rather than guessed at.
pub(super) fn do_block(c: &mut Cursor<'_>) -> Option<DdlKind> {
    let (mut language, mut body) = (None, None);
    while !c.at_end() {
        if c.eat("LANGUAGE") {
            if language.is_some() {
                return None;
            }
            language = Some(c.read_word_or_sconst()?);
        } else {
            if body.is_some() {
                return None;
            }
            body = Some(c.read_sconst()?);
        }
    }
    Some(DdlKind::Do {
        language,
        body: body?,
    })
}

#[cfg(test)]
mod tests {
    use super::super::tests::*;
    use super::*;

    #[test]
    fn do_blocks() {
        let do_ = |language: Option<&str>, body: &str| DdlKind::Do {
            language: language.map(str::to_owned),
            body: body.to_owned(),
        };
        check(&[
            (
                "DO $$ BEGIN CREATE INDEX i ON t (x); END $$",
                do_(None, " BEGIN CREATE INDEX i ON t (x); END "),
            ),
            (
                "DO LANGUAGE plpgsql 'BEGIN NULL; END'",
                do_(Some("plpgsql"), "BEGIN NULL; END"),
            ),
            (
                "do $fn$ select 'it''s' $fn$ language PLPGSQL",
                do_(Some("plpgsql"), " select 'it''s' "),
            ),
            (
                "DO 'BEGIN RAISE NOTICE ''hi''; END'",
                do_(None, "BEGIN RAISE NOTICE 'hi'; END"),
            ),
            (
                "DO E'BEGIN RAISE NOTICE \\'hi\\'; END'",
                do_(None, "BEGIN RAISE NOTICE 'hi'; END"),
            ),
            ("DO LANGUAGE 'plperl' $$ 1 $$", do_(Some("plperl"), " 1 ")),
            ("DO LANGUAGE \"PLpgSQL\" $$$$", do_(Some("PLpgSQL"), "")),
        ]);
        // No body, two bodies, two languages, a bit string: not a DO PostgreSQL accepts.
        for sql in [
            "DO",
            "DO LANGUAGE plpgsql",
            "DO 'a' 'b'",
            "DO 'a'\n'b'",
            "DO LANGUAGE a LANGUAGE b 'x'",
            "DO B'0101'",
            "DO $$ x $$ ;",
            "DO x",
        ] {
            assert_eq!(kind(sql), DdlKind::Unknown, "classifying {sql:?}");
        }
    }
}

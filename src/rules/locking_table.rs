//! `locking-table`: an explicit `LOCK TABLE` in a mode that blocks ordinary traffic — SHARE or
//! stronger (`LOCK t` alone means ACCESS EXCLUSIVE).
//!
//! - **Lock:** the mode requested, held until the transaction ends. SHARE, SHARE ROW EXCLUSIVE
//!   and EXCLUSIVE block INSERT, UPDATE and DELETE; ACCESS EXCLUSIVE blocks reads too. While
//!   the LOCK waits, everything later queues behind it.
//! - **Safe alternative:** avoid explicit locks in migrations; if one is needed, take the
//!   weakest mode that works, keep the transaction short, and set a short `lock_timeout`.
//! - **Rewrite:** no. Default: warn.
//! - **Not flagged:** ROW SHARE, ROW EXCLUSIVE, SHARE UPDATE EXCLUSIVE (they do not block
//!   queries), and tables created earlier in the same transaction.
//!
//! <https://www.postgresql.org/docs/current/sql-lock.html>

use super::{Action, Context, Finding, Rule};
use crate::sql::statement::{Ddl, DdlKind, LockMode};

pub static RULE: Rule = Rule {
    id: "locking-table",
    lock: "as requested, SHARE or stronger, until the transaction ends: blocks writes (ACCESS EXCLUSIVE: reads too)",
    summary: "LOCK TABLE in a mode that blocks ordinary queries",
    default_action: Action::Warn,
    check,
};

fn check(ddl: &Ddl, ctx: &Context) -> Option<Finding> {
    let DdlKind::Lock { tables, mode } = &ddl.kind else {
        return None;
    };
    if !mode.blocks_traffic() {
        return None;
    }
    let list = ctx.existing_tables(tables.iter())?;
    let blocked = if *mode == LockMode::AccessExclusive {
        "every read and write"
    } else {
        "every INSERT, UPDATE and DELETE"
    };
    Some(Finding {
        rule: RULE.id,
        message: format!(
            "LOCK TABLE {list} IN {} MODE holds the lock until the transaction ends: {blocked} on {list} waits until then.",
            mode.as_str()
        ),
        hint: "Avoid explicit locks in migrations; if one is needed, use the weakest mode that works, keep the transaction short, and set a short lock_timeout.".to_owned(),
        rewrite: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::testing::{Ctx, run, table};
    use crate::sql::statement::Name;

    #[test]
    fn flags_modes_that_block_traffic() {
        table(
            &RULE,
            &Ctx::default(),
            &[
                "LOCK TABLE t IN ACCESS SHARE MODE",
                "LOCK TABLE t IN ROW SHARE MODE",
                "LOCK TABLE t IN ROW EXCLUSIVE MODE NOWAIT",
                "LOCK TABLE t IN SHARE UPDATE EXCLUSIVE MODE",
                "SELECT * FROM t FOR UPDATE",
            ],
            &[
                "LOCK t",
                "LOCK TABLE t IN SHARE MODE",
                "lock table s.a, b in share row exclusive mode",
                "LOCK TABLE t IN EXCLUSIVE MODE",
                "LOCK TABLE ONLY t IN ACCESS EXCLUSIVE MODE NOWAIT",
            ],
        );
        let f = run(&RULE, "LOCK t", &Ctx::default()).expect("flagged");
        assert!(
            f.message.contains("ACCESS EXCLUSIVE MODE")
                && f.message.contains("every read and write"),
            "{}",
            f.message
        );
        let f = run(&RULE, "LOCK TABLE t IN SHARE MODE", &Ctx::default()).expect("flagged");
        assert!(
            f.message.contains("every INSERT, UPDATE and DELETE"),
            "{}",
            f.message
        );
    }

    #[test]
    fn tables_created_in_the_transaction_are_exempt() {
        let mut ctx = Ctx::in_tx();
        ctx.created.insert(Name::bare("fresh"));
        assert_eq!(run(&RULE, "LOCK TABLE fresh", &ctx), None);
        let f = run(&RULE, "LOCK TABLE fresh, old", &ctx).expect("flagged");
        assert!(f.message.starts_with("LOCK TABLE old IN"), "{}", f.message);
    }
}

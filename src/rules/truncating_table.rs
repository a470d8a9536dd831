//! `truncating-table`: `TRUNCATE` (without CASCADE, which `ban-truncate-cascade` covers) of a
//! table that existed before the transaction.
//!
//! - **Lock:** ACCESS EXCLUSIVE on each table until the transaction ends — every read and
//!   write waits, and while TRUNCATE waits for the lock everything queues behind it.
//! - **Risk:** destructive; the data is gone for every session at COMMIT.
//! - **Safe alternative:** make sure this is intended; to clear a large live table, delete in
//!   batches instead.
//! - **Rewrite:** no. Default: warn.
//! - **Not flagged:** tables created earlier in the same transaction.
//!
//! <https://www.postgresql.org/docs/current/sql-truncate.html>

use super::{Action, Context, Finding, Rule};
use crate::sql::statement::{Ddl, DdlKind};

pub static RULE: Rule = Rule {
    id: "truncating-table",
    lock: "ACCESS EXCLUSIVE on each table: blocks every read and write",
    summary: "TRUNCATE of an existing table",
    default_action: Action::Warn,
    check,
};

fn check(ddl: &Ddl, ctx: &Context) -> Option<Finding> {
    let DdlKind::Truncate {
        names,
        cascade: false,
    } = &ddl.kind
    else {
        return None;
    };
    let list = ctx.existing_tables(names.iter())?;
    Some(Finding {
        rule: RULE.id,
        message: format!(
            "TRUNCATE {list} deletes every row and takes an ACCESS EXCLUSIVE lock: every read and write on {list} waits until the transaction ends."
        ),
        hint: "Make sure emptying the table is intended; to clear a large live table without blocking it, delete in batches instead.".to_owned(),
        rewrite: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::testing::{Ctx, run, table};
    use crate::sql::statement::Name;

    #[test]
    fn flags_plain_truncate() {
        table(
            &RULE,
            &Ctx::default(),
            &["TRUNCATE t CASCADE", "DELETE FROM t", "DROP TABLE t"],
            &[
                "TRUNCATE t",
                "truncate table only s.t restart identity",
                "TRUNCATE a, b",
            ],
        );
    }

    #[test]
    fn tables_created_in_the_transaction_are_exempt() {
        let mut ctx = Ctx::in_tx();
        ctx.created.insert(Name::bare("fresh"));
        assert_eq!(run(&RULE, "TRUNCATE fresh", &ctx), None);
        let f = run(&RULE, "TRUNCATE fresh, old", &ctx).expect("flagged");
        assert!(f.message.starts_with("TRUNCATE old "), "{}", f.message);
    }
}

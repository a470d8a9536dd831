//! `changing-tablespace`: `ALTER TABLE … SET TABLESPACE`.
//!
//! - **Lock:** ACCESS EXCLUSIVE while every data file of the table is copied to the new
//!   tablespace — every read and write waits, for a time proportional to the table's size.
//! - **Safe alternative:** `pg_repack --tablespace`, or a new table in the target tablespace
//!   filled by a copy, then a name swap in one short transaction.
//! - **Rewrite:** no.
//! - **Not flagged:** tables created earlier in the same transaction. (`ALTER INDEX … SET
//!   TABLESPACE` is an `AlterIndex` statement, not covered here.)
//!
//! <https://www.postgresql.org/docs/current/sql-altertable.html#SQL-ALTERTABLE-DESC-SET-TABLESPACE>

use super::{Action, Context, Finding, Rule};
use crate::sql::statement::{AlterOp, Ddl, DdlKind};

pub static RULE: Rule = Rule {
    id: "changing-tablespace",
    lock: "ACCESS EXCLUSIVE while all data files are copied: blocks every read and write",
    summary: "ALTER TABLE … SET TABLESPACE",
    default_action: Action::Block,
    check,
};

fn check(ddl: &Ddl, ctx: &Context) -> Option<Finding> {
    let DdlKind::AlterTable {
        name: table, ops, ..
    } = &ddl.kind
    else {
        return None;
    };
    if ctx.is_new(table) || !ops.contains(&AlterOp::SetTablespace) {
        return None;
    }
    Some(Finding {
        rule: RULE.id,
        message: format!(
            "SET TABLESPACE copies every data file of {table} under an ACCESS EXCLUSIVE lock: every read and write on {table} waits for the whole copy."
        ),
        hint: "Use pg_repack --tablespace, or create a new table in the target tablespace, copy the data, and swap the names in one short transaction.".to_owned(),
        rewrite: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::testing::{Ctx, table};
    use crate::sql::statement::{Name, Understood};

    // sqlparser 0.64 rejects SET TABLESPACE; the token classifier builds these.
    fn alter(table: &str, ops: Vec<AlterOp>) -> Ddl {
        Ddl {
            kind: DdlKind::AlterTable {
                name: Name::bare(table),
                only: false,
                if_exists: false,
                ops,
            },
            understood: Understood::Fallback,
        }
    }

    #[test]
    fn flags_set_tablespace() {
        let ctx = Ctx::default();
        let f = (RULE.check)(&alter("events", vec![AlterOp::SetTablespace]), &ctx.get())
            .expect("flagged");
        assert!(
            f.message.contains("events") && f.hint.contains("pg_repack"),
            "{}",
            f.message
        );
        let multi = alter(
            "events",
            vec![
                AlterOp::Other("SET (fillfactor=70)".into()),
                AlterOp::SetTablespace,
            ],
        );
        assert!((RULE.check)(&multi, &ctx.get()).is_some());
        assert_eq!(
            (RULE.check)(&alter("events", vec![AlterOp::SetLogged]), &ctx.get()),
            None
        );
        let index = Ddl {
            kind: DdlKind::AlterIndex {
                name: Name::bare("i"),
                action: "SET TABLESPACE".into(),
            },
            understood: Understood::Fallback,
        };
        assert_eq!((RULE.check)(&index, &ctx.get()), None);
        table(
            &RULE,
            &ctx,
            &[
                "ALTER TABLE t SET LOGGED",
                "ALTER TABLE t ADD COLUMN c int",
                "CREATE TABLE t (c int)",
            ],
            &[],
        );
    }

    #[test]
    fn tables_created_in_the_transaction_are_exempt() {
        let mut ctx = Ctx::in_tx();
        ctx.created.insert(Name::bare("fresh"));
        assert_eq!(
            (RULE.check)(&alter("fresh", vec![AlterOp::SetTablespace]), &ctx.get()),
            None
        );
        assert!((RULE.check)(&alter("other", vec![AlterOp::SetTablespace]), &ctx.get()).is_some());
    }
}

//! `require-concurrent-index-creation`: a plain `CREATE INDEX` on an existing table.
//!
//! - **Lock:** SHARE on the table for the whole build — INSERT, UPDATE and DELETE wait until it
//!   finishes (reads continue).
//! - **Safe alternative:** `CREATE INDEX CONCURRENTLY`, which takes SHARE UPDATE EXCLUSIVE and
//!   lets writes proceed; it cannot run inside a transaction block.
//! - **Rewrite:** yes — `CONCURRENTLY` is inserted into the client's own text when the
//!   statement runs alone outside a transaction block.
//! - **Not flagged:** tables created earlier in the same transaction (nobody else can see them)
//!   and `CREATE INDEX … ON ONLY parent`, which builds nothing.
//!
//! <https://www.postgresql.org/docs/current/sql-createindex.html#SQL-CREATEINDEX-CONCURRENTLY>

use super::{Action, Context, Finding, OUTSIDE_TRANSACTION_HINT, Rewrite, Rule};
use crate::sql::statement::{Ddl, DdlKind};

pub static RULE: Rule = Rule {
    id: "require-concurrent-index-creation",
    lock: "SHARE on the table for the whole build: blocks INSERT, UPDATE and DELETE",
    summary: "CREATE INDEX without CONCURRENTLY on an existing table",
    default_action: Action::Rewrite,
    check,
};

fn check(ddl: &Ddl, ctx: &Context) -> Option<Finding> {
    let DdlKind::CreateIndex {
        table,
        concurrently: false,
        only: false,
        ..
    } = &ddl.kind
    else {
        return None;
    };
    if ctx.is_new(table) {
        return None;
    }
    let message = format!(
        "CREATE INDEX on {table} takes a SHARE lock for the whole index build: every INSERT, UPDATE and DELETE on {table} waits until it finishes."
    );
    if ctx.in_transaction_block() {
        return Some(Finding {
            rule: RULE.id,
            message,
            hint: format!(
                "Use CREATE INDEX CONCURRENTLY, which builds without blocking writes but cannot run {}. {OUTSIDE_TRANSACTION_HINT}",
                ctx.block_description()
            ),
            rewrite: None,
        });
    }
    Some(Finding {
        rule: RULE.id,
        message,
        hint: "Use CREATE INDEX CONCURRENTLY, which builds the index without blocking writes."
            .to_owned(),
        rewrite: Some(Rewrite::Concurrently),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::testing::{Ctx, run, table};
    use crate::sql::statement::Name;

    #[test]
    fn flags_plain_builds_only() {
        table(
            &RULE,
            &Ctx::default(),
            &[
                "CREATE INDEX CONCURRENTLY i ON t (x)",
                "create unique index concurrently if not exists i on s.t using gin (x)",
                "CREATE INDEX i ON ONLY events (tenant_id)",
                "CREATE TABLE t (x int)",
            ],
            &[
                "CREATE INDEX i ON t (x)",
                "CREATE UNIQUE INDEX IF NOT EXISTS i ON public.\"T\" (lower(x)) WHERE y",
                "/* c */ create index on t(x)",
            ],
        );
    }

    #[test]
    fn rewrites_only_outside_transaction_blocks() {
        let f = run(&RULE, "CREATE INDEX i ON t (x)", &Ctx::default()).expect("flagged");
        assert_eq!(f.rewrite, Some(Rewrite::Concurrently));
        for ctx in [
            Ctx::in_tx(),
            Ctx {
                shares_unit: true,
                ..Ctx::default()
            },
            Ctx {
                in_function_body: true,
                ..Ctx::default()
            },
        ] {
            let f = run(&RULE, "CREATE INDEX i ON t (x)", &ctx).expect("flagged");
            assert_eq!(f.rewrite, None);
            assert!(f.hint.contains("disable_ddl_transaction!"), "{}", f.hint);
        }
    }

    #[test]
    fn tables_created_in_the_transaction_are_exempt() {
        let mut ctx = Ctx::in_tx();
        ctx.created.insert(Name::bare("fresh"));
        assert_eq!(run(&RULE, "CREATE INDEX i ON fresh (x)", &ctx), None);
        assert_eq!(run(&RULE, "CREATE INDEX i ON public.fresh (x)", &ctx), None);
        assert!(run(&RULE, "CREATE INDEX i ON other (x)", &ctx).is_some());
    }
}

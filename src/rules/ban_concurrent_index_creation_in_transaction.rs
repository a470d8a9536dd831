//! `ban-concurrent-index-creation-in-transaction`: a `CONCURRENTLY` operation where PostgreSQL
//! cannot run one — inside a transaction block, a multi-statement Query, a pipeline, or a
//! function/DO body.
//!
//! - **Lock:** none is taken: PostgreSQL refuses with SQLSTATE 25001 ("cannot run inside a
//!   transaction block" / "cannot be executed within a pipeline"). The migration fails; worse,
//!   tools that wrap files in transactions make the safe form unusable.
//! - **Covers:** CREATE INDEX, DROP INDEX and REINDEX … CONCURRENTLY, and DETACH PARTITION …
//!   CONCURRENTLY (squawk's rule of the same name covers only CREATE INDEX).
//! - **Safe alternative:** run the statement on its own, outside any transaction.
//! - **Rewrite:** no; ddlgate stops it with an explanation before the server fails it.
//!
//! <https://www.postgresql.org/docs/current/sql-createindex.html#SQL-CREATEINDEX-CONCURRENTLY>

use super::{Action, Context, Finding, OUTSIDE_TRANSACTION_HINT, Rule};
use crate::sql::statement::{AlterOp, Ddl, DdlKind};

pub static RULE: Rule = Rule {
    id: "ban-concurrent-index-creation-in-transaction",
    lock: "none: PostgreSQL refuses CONCURRENTLY inside a transaction block (SQLSTATE 25001)",
    summary: "CONCURRENTLY inside a transaction block, multi-statement query, pipeline or function body",
    default_action: Action::Block,
    check,
};

fn check(ddl: &Ddl, ctx: &Context) -> Option<Finding> {
    if !ctx.in_transaction_block() {
        return None;
    }
    let what = match &ddl.kind {
        DdlKind::CreateIndex {
            concurrently: true, ..
        } => "CREATE INDEX CONCURRENTLY",
        DdlKind::DropIndex {
            concurrently: true, ..
        } => "DROP INDEX CONCURRENTLY",
        DdlKind::Reindex {
            concurrently: true, ..
        } => "REINDEX CONCURRENTLY",
        DdlKind::AlterTable { ops, .. }
            if ops.iter().any(|op| {
                matches!(
                    op,
                    AlterOp::DetachPartition {
                        concurrently: true,
                        ..
                    }
                )
            }) =>
        {
            "DETACH PARTITION CONCURRENTLY"
        }
        _ => return None,
    };
    Some(Finding {
        rule: RULE.id,
        message: format!(
            "{what} cannot run {}: PostgreSQL would refuse it and fail the migration.",
            ctx.block_description()
        ),
        hint: OUTSIDE_TRANSACTION_HINT.to_owned(),
        rewrite: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::testing::{Ctx, table};

    #[test]
    fn flags_concurrently_inside_blocks_only() {
        let concurrent = [
            "CREATE INDEX CONCURRENTLY i ON t (x)",
            "DROP INDEX CONCURRENTLY i",
            "REINDEX INDEX CONCURRENTLY i",
            "ALTER TABLE m DETACH PARTITION m_2020 CONCURRENTLY",
        ];
        table(&RULE, &Ctx::default(), &concurrent, &[]);
        table(
            &RULE,
            &Ctx::in_tx(),
            &["CREATE INDEX i ON t (x)", "DROP INDEX i"],
            &concurrent,
        );
        table(
            &RULE,
            &Ctx {
                shares_unit: true,
                ..Ctx::default()
            },
            &[],
            &concurrent,
        );
        table(
            &RULE,
            &Ctx {
                in_function_body: true,
                ..Ctx::default()
            },
            &[],
            &concurrent,
        );
    }
}

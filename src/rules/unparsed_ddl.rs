//! `unparsed-ddl`: a statement that may be DDL but that neither sqlparser nor ddlgate's
//! token classifier understands — including one nested or chained too deeply to read safely
//! (`sql::parse::too_complex`), and a DO block or function whose body, language or string
//! escapes cannot be decoded with certainty (`sql::literal`).
//!
//! - **Lock:** unknown — which is the point: ddlgate cannot tell what it locks or rewrites.
//! - **Default:** blocked in enforce mode. A safety proxy fails closed: statements nobody
//!   understands are exactly how a guard gets bypassed (PgCat forwarded what its parser
//!   rejected). Profiles can set `unparsed-ddl` to `warn` or `allow`; every occurrence is
//!   counted.
//! - **Safe alternative:** if the statement is safe, allow it explicitly with an override comment
//!   naming this rule, and report it so the classifier learns it.
//!
//! <https://www.postgresql.org/docs/current/sql-commands.html>

use super::{Action, Context, Finding, Rule};
use crate::sql::statement::{Ddl, DdlKind};

pub static RULE: Rule = Rule {
    id: "unparsed-ddl",
    lock: "unknown: ddlgate could not tell what the statement locks",
    summary: "a possible DDL statement ddlgate could not understand",
    default_action: Action::Block,
    check,
};

fn check(ddl: &Ddl, _ctx: &Context) -> Option<Finding> {
    matches!(ddl.kind, DdlKind::Unknown).then(|| Finding {
        rule: RULE.id,
        message: "ddlgate could not understand this statement, so it cannot tell which locks it takes or what it changes.".to_owned(),
        hint: "Check the statement's spelling; if it is correct, report it so ddlgate learns the syntax.".to_owned(),
        rewrite: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::testing::{Ctx, table};

    #[test]
    fn flags_only_what_nothing_understood() {
        table(
            &RULE,
            &Ctx::default(),
            &["CREATE INDEX i ON t (x)", "CREATE VIEW v AS SELECT 1"],
            &["FROBNICATE t"],
        );
    }
}

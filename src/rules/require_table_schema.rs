//! `require-table-schema` (opt-in style rule, as in squawk): `CREATE TABLE`, `ALTER TABLE` or
//! `DROP TABLE` with a name that is not schema-qualified, so the session's `search_path`
//! decides which table it is.
//!
//! Off in the proxy unless a profile sets an action for it; on with `ddlgate check --style`.
//! Temporary tables (always in the session's own schema) are not flagged. Rewrite: no.
//!
//! <https://www.postgresql.org/docs/current/ddl-schemas.html#DDL-SCHEMAS-PATH>

use super::{Action, Context, Finding, Rule};
use crate::sql::statement::{Ddl, DdlKind, Name};

pub static RULE: Rule = Rule {
    id: "require-table-schema",
    lock: "style only: no lock of its own",
    summary: "CREATE / ALTER / DROP TABLE of a name without its schema",
    default_action: Action::Allow,
    check,
};

fn check(ddl: &Ddl, _ctx: &Context) -> Option<Finding> {
    let names: Vec<&Name> = match &ddl.kind {
        DdlKind::CreateTable {
            name,
            temporary: false,
            ..
        }
        | DdlKind::AlterTable { name, .. } => vec![name],
        DdlKind::DropTable { names, .. } => names.iter().collect(),
        _ => return None,
    };
    let bare = names.into_iter().find(|n| n.schema.is_none())?;
    Some(Finding {
        rule: RULE.id,
        message: format!(
            "{bare} has no schema: the session's search_path decides which table this is, so the same migration can act on another schema's table."
        ),
        hint: format!("Qualify the name with its schema, e.g. public.{bare}."),
        rewrite: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::testing::{Ctx, table};

    #[test]
    fn flags_unqualified_tables() {
        table(
            &RULE,
            &Ctx::default(),
            &[
                "CREATE TABLE public.t (id bigint)",
                "ALTER TABLE app.t ADD COLUMN c int",
                "DROP TABLE public.t",
                "CREATE TEMP TABLE t (id bigint)",
                "CREATE INDEX i ON t (c)",
            ],
            &[
                "CREATE TABLE t (id bigint)",
                "ALTER TABLE t ADD COLUMN c int",
                "DROP TABLE public.a, b",
            ],
        );
    }
}

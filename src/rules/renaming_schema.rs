//! `renaming-schema`: `ALTER SCHEMA … RENAME TO`.
//!
//! - **Lock:** the schema's catalog row only, briefly; no table lock.
//! - **Risk:** every schema-qualified name (`app.orders`) in running application code, views
//!   in other tools, functions and `search_path` settings stops resolving the moment the
//!   rename commits — a rename of every table in the schema at once.
//! - **Safe alternative:** create the new schema and move tables one at a time with the
//!   expand/contract approach of `renaming-table` (an updatable view under the old name), or
//!   keep the old schema name.
//! - **Rewrite:** no.
//!
//! <https://www.postgresql.org/docs/current/sql-alterschema.html>

use super::{Action, Context, Finding, Rule};
use crate::sql::statement::{Ddl, DdlKind};

pub static RULE: Rule = Rule {
    id: "renaming-schema",
    lock: "the schema only, briefly; breaks every name qualified with the old schema",
    summary: "ALTER SCHEMA … RENAME TO",
    default_action: Action::Block,
    check,
};

fn check(ddl: &Ddl, _ctx: &Context) -> Option<Finding> {
    let DdlKind::RenameSchema { name, to } = &ddl.kind else {
        return None;
    };
    Some(Finding {
        rule: RULE.id,
        message: format!(
            "Renaming schema {name} to {to} breaks every client, view, function and search_path that names {name}: it renames every table in it at once, as soon as it commits."
        ),
        hint: format!(
            "Keep schema {name}; or create {to} and move tables one at a time with expand/contract, leaving updatable views in {name} until no client uses them."
        ),
        rewrite: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::testing::{Ctx, table};

    #[test]
    fn flags_schema_renames() {
        table(
            &RULE,
            &Ctx::default(),
            &[
                "ALTER SCHEMA s OWNER TO r",
                "CREATE SCHEMA s",
                "ALTER TABLE s RENAME TO t",
            ],
            &[
                "ALTER SCHEMA app RENAME TO app_old",
                "alter schema \"App\" rename to b",
            ],
        );
    }
}

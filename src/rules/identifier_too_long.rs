//! `identifier-too-long` (opt-in style rule, as in squawk): a name longer than 63 bytes
//! (`NAMEDATALEN - 1`) for a table, column, index or constraint the statement creates or
//! renames to. PostgreSQL truncates it silently (with a NOTICE), so two long names that share
//! their first 63 bytes collide, and code using the full name finds nothing.
//!
//! Off in the proxy unless a profile sets an action for it; on with `ddlgate check --style`.
//! Rewrite: no.
//!
//! <https://www.postgresql.org/docs/current/sql-syntax-lexical.html#SQL-SYNTAX-IDENTIFIERS>

use super::{Action, Context, Finding, Rule};
use crate::sql::statement::{AddConstraint, AlterOp, Ddl, DdlKind};

pub static RULE: Rule = Rule {
    id: "identifier-too-long",
    lock: "style only: no lock of its own",
    summary: "a new table, column, index or constraint name longer than 63 bytes (PostgreSQL truncates it)",
    default_action: Action::Allow,
    check,
};

/// PostgreSQL's `NAMEDATALEN - 1`.
const MAX_IDENTIFIER_BYTES: usize = 63;

fn new_names(ddl: &Ddl) -> Vec<&str> {
    let mut names = Vec::new();
    match &ddl.kind {
        DdlKind::CreateTable { name, columns, .. } => {
            names.push(name.name.as_str());
            names.extend(columns.iter().map(|c| c.name.as_str()));
        }
        DdlKind::CreateIndex { name: Some(n), .. } => names.push(n.name.as_str()),
        DdlKind::AlterTable { ops, .. } => {
            for op in ops {
                match op {
                    AlterOp::AddColumn(c) => names.push(c.name.as_str()),
                    AlterOp::RenameColumn { to, .. } | AlterOp::RenameTable { to } => {
                        names.push(to.as_str());
                    }
                    AlterOp::AddConstraint(AddConstraint { name: Some(n), .. }) => {
                        names.push(n.as_str());
                    }
                    _ => {}
                }
            }
        }
        _ => {}
    }
    names
}

fn check(ddl: &Ddl, _ctx: &Context) -> Option<Finding> {
    let long = new_names(ddl)
        .into_iter()
        .find(|n| n.len() > MAX_IDENTIFIER_BYTES)?;
    let mut cut = MAX_IDENTIFIER_BYTES;
    while !long.is_char_boundary(cut) {
        cut -= 1;
    }
    let kept = long.get(..cut).unwrap_or(long);
    Some(Finding {
        rule: RULE.id,
        message: format!(
            "The name {long} is {} bytes long: PostgreSQL keeps only the first {MAX_IDENTIFIER_BYTES} ({kept}), so code using the full name finds nothing, and another long name sharing that start collides.",
            long.len()
        ),
        hint: format!("Choose a name of at most {MAX_IDENTIFIER_BYTES} bytes."),
        rewrite: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::testing::{Ctx, table};

    #[test]
    fn flags_names_past_63_bytes() {
        let n63 = "a".repeat(63);
        let n64 = "b".repeat(64);
        let ok = [
            format!("CREATE TABLE {n63} (c int)"),
            format!("ALTER TABLE t ADD COLUMN {n63} int"),
            format!("SELECT 1 AS {n64}"),
        ];
        let flagged = [
            format!("CREATE TABLE {n64} (c int)"),
            format!("CREATE TABLE t ({n64} int)"),
            format!("CREATE INDEX {n64} ON t (c)"),
            format!("ALTER TABLE t ADD COLUMN {n64} int"),
            format!("ALTER TABLE t RENAME COLUMN a TO {n64}"),
            format!("ALTER TABLE t ADD CONSTRAINT {n64} CHECK (c > 0)"),
        ];
        let ok: Vec<&str> = ok.iter().map(String::as_str).collect();
        let flagged: Vec<&str> = flagged.iter().map(String::as_str).collect();
        table(&RULE, &Ctx::default(), &ok, &flagged);
    }
}

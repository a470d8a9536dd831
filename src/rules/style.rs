//! Shared readers of the opt-in style rules (`STYLE_RULES`: off in the proxy unless a profile
//! sets an action for them, on with `ddlgate check --style`): the column types a statement
//! defines, normalised.

use super::Finding;
use crate::sql::statement::{AlterOp, Ddl, DdlKind, Name};

/// One column a statement defines (CREATE TABLE, ADD COLUMN) or retypes (ALTER COLUMN TYPE).
pub(super) struct TypedColumn<'a> {
    pub table: &'a Name,
    pub column: &'a str,
    /// The type as written, lower-cased, without a `pg_catalog.` prefix or array brackets.
    pub base: &'a str,
}

/// Every column `ddl` defines or retypes, in statement order.
pub(super) fn typed_columns(ddl: &Ddl) -> Vec<TypedColumn<'_>> {
    let mut out = Vec::new();
    let mut push = |table, column, data_type| {
        out.push(TypedColumn {
            table,
            column,
            base: base_type(data_type),
        })
    };
    match &ddl.kind {
        DdlKind::CreateTable { name, columns, .. } => {
            for c in columns {
                push(name, &c.name, &c.data_type);
            }
        }
        DdlKind::AlterTable { name, ops, .. } => {
            for op in ops {
                match op {
                    AlterOp::AddColumn(c) => push(name, &c.name, &c.data_type),
                    AlterOp::AlterColumnType {
                        column, data_type, ..
                    } => push(name, column, data_type),
                    _ => {}
                }
            }
        }
        _ => {}
    }
    out
}

/// The finding of a type preference: the first column `ddl` defines or retypes whose type,
/// without modifiers, is one of `types`; `say` gives its message and hint.
pub(super) fn type_finding(
    ddl: &Ddl,
    rule: &'static str,
    types: &[&str],
    say: impl Fn(&TypedColumn<'_>) -> (String, String),
) -> Option<Finding> {
    let column = typed_columns(ddl)
        .into_iter()
        .find(|c| types.contains(&without_modifiers(c.base).as_str()))?;
    let (message, hint) = say(&column);
    Some(Finding {
        rule,
        message,
        hint,
        rewrite: None,
    })
}

/// `pg_catalog.int4[]` → `int4`; `varchar(20)` stays `varchar(20)`.
pub(super) fn base_type(data_type: &str) -> &str {
    let mut t = data_type.trim();
    while let Some(rest) = t.strip_suffix("[]") {
        t = rest.trim_end();
    }
    t.strip_prefix("pg_catalog.").unwrap_or(t)
}

/// The type name without its modifiers: `varchar(20)` → `varchar`, `timestamp(3) without time
/// zone` → `timestamp without time zone`.
pub(super) fn without_modifiers(base: &str) -> String {
    let mut out = String::with_capacity(base.len());
    let mut depth = 0usize;
    for ch in base.chars() {
        match ch {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            _ if depth == 0 => out.push(ch),
            _ => {}
        }
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_are_normalised() {
        assert_eq!(base_type("pg_catalog.int4[]"), "int4");
        assert_eq!(base_type("int[][]"), "int");
        assert_eq!(without_modifiers("varchar(20)"), "varchar");
        assert_eq!(
            without_modifiers("timestamp(3) without time zone"),
            "timestamp without time zone"
        );
    }
}

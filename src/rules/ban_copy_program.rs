//! `ban-copy-program`: `COPY … FROM PROGRAM` and `COPY … TO PROGRAM`.
//!
//! - **Lock:** ROW EXCLUSIVE (FROM) or ACCESS SHARE (TO) on the table; the danger is elsewhere.
//! - **Risk:** the server runs the string as a shell command, as its operating-system user
//!   (the one owning the data directory): it can read, change or delete any table's files,
//!   stop the server or run `psql` against it — outside every rule, the lock guard and the
//!   audit log. Only superusers and `pg_execute_server_program` members may, but a migration
//!   role often is one.
//! - **Safe alternative:** `COPY … FROM STDIN` / `TO STDOUT` (psql's `\copy`), with the
//!   program run on the client side.
//! - **Rewrite:** no.
//!
//! <https://www.postgresql.org/docs/current/sql-copy.html>

use super::{Action, Context, Finding, Rule};
use crate::sql::statement::{Ddl, DdlKind};

pub static RULE: Rule = Rule {
    id: "ban-copy-program",
    lock: "none that blocks traffic; runs a shell command as the server's OS user",
    summary: "COPY … FROM PROGRAM / TO PROGRAM",
    default_action: Action::Block,
    check,
};

fn check(ddl: &Ddl, _ctx: &Context) -> Option<Finding> {
    let DdlKind::CopyProgram { to } = &ddl.kind else {
        return None;
    };
    let (clause, instead) = if *to {
        ("TO PROGRAM", "COPY … TO STDOUT")
    } else {
        ("FROM PROGRAM", "COPY … FROM STDIN")
    };
    Some(Finding {
        rule: RULE.id,
        message: format!(
            "COPY … {clause} runs a shell command on the database server as its operating-system user, which can read or change any table's files outside every check."
        ),
        hint: format!("Use {instead} (psql's \\copy) and run the program on the client side."),
        rewrite: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::testing::{Ctx, table};

    #[test]
    fn flags_copy_program() {
        table(
            &RULE,
            &Ctx::default(),
            &[
                "COPY t FROM STDIN",
                "COPY t TO STDOUT (FORMAT csv)",
                "COPY program FROM STDIN",
            ],
            &[
                "COPY victim FROM PROGRAM 'cat /tmp/x'",
                "copy (SELECT * FROM victim) TO program 'rm -rf /'",
                "COPY victim (a, b) FROM PROGRAM 'x' WITH (FORMAT csv)",
            ],
        );
    }
}

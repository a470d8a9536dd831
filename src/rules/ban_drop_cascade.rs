//! `ban-drop-cascade`: `DROP <object> … CASCADE` of a type, domain, function, procedure,
//! schema, extension, collation, access method, operator, cast, text search object, sequence,
//! view, … (every kind but tables and indexes, which have their own rules).
//!
//! - **Lock:** ACCESS EXCLUSIVE on every dependent table, none of them named in the statement —
//!   ddlgate cannot guard them one by one (the guard still runs it under the short
//!   `lock_timeout`).
//! - **Risk:** CASCADE drops whatever depends on the object: `DROP TYPE … CASCADE` drops every
//!   column of that type, `DROP FUNCTION … CASCADE` the generated columns, defaults, triggers,
//!   constraints and indexes using it, `DROP SCHEMA … CASCADE` every table in the schema, `DROP
//!   EXTENSION … CASCADE` every column of its types. Data is lost, silently.
//! - **Safe alternative:** drop without CASCADE (the default, RESTRICT): PostgreSQL then lists
//!   the dependent objects and refuses; drop or change those deliberately first.
//! - **Rewrite:** no.
//!
//! <https://www.postgresql.org/docs/current/ddl-depend.html>

use super::{Action, Context, Finding, Rule};
use crate::sql::statement::{Ddl, DdlKind};

pub static RULE: Rule = Rule {
    id: "ban-drop-cascade",
    lock: "ACCESS EXCLUSIVE on every dependent table, none of them named",
    summary: "DROP TYPE / DOMAIN / FUNCTION / SCHEMA / EXTENSION / … CASCADE (drops dependent columns and tables)",
    default_action: Action::Block,
    check,
};

fn check(ddl: &Ddl, _ctx: &Context) -> Option<Finding> {
    let DdlKind::DropCascade { tag } = &ddl.kind else {
        return None;
    };
    let reach = match tag.as_str() {
        "DROP SCHEMA" => "every table, view and function in the schema, with all their rows",
        "DROP TYPE" | "DROP DOMAIN" | "DROP EXTENSION" | "DROP COLLATION" => {
            "every column of a dependent type or collation — the table keeps running without the column and its data"
        }
        _ => {
            "every dependent object — columns (generated columns and those of dependent types), defaults, constraints, indexes, triggers and views"
        }
    };
    Some(Finding {
        rule: RULE.id,
        message: format!(
            "{tag} … CASCADE also drops {reach}, in tables the statement never names."
        ),
        hint: format!(
            "Run {tag} without CASCADE: PostgreSQL then lists what depends on the object and refuses. Drop or migrate those dependents deliberately first."
        ),
        rewrite: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::testing::{Ctx, run, table};

    #[test]
    fn flags_cascading_drops_of_everything_but_tables() {
        table(
            &RULE,
            &Ctx::default(),
            &[
                "DROP TYPE mood",
                "DROP SCHEMA s RESTRICT",
                "DROP FUNCTION f(int)",
                "DROP TABLE t CASCADE",
                "DROP INDEX i CASCADE",
            ],
            &[
                "DROP TYPE mood CASCADE",
                "DROP DOMAIN IF EXISTS d CASCADE",
                "DROP FUNCTION f(int) CASCADE",
                "DROP PROCEDURE p() CASCADE",
                "DROP ROUTINE r CASCADE",
                "DROP AGGREGATE a(int) CASCADE",
                "DROP COLLATION c CASCADE",
                "DROP EXTENSION citext CASCADE",
                "DROP ACCESS METHOD am CASCADE",
                "DROP TEXT SEARCH CONFIGURATION c CASCADE",
                "DROP TEXT SEARCH DICTIONARY d CASCADE",
                "DROP TEXT SEARCH PARSER p CASCADE",
                "DROP TEXT SEARCH TEMPLATE t CASCADE",
                "DROP OPERATOR === (int, int) CASCADE",
                "DROP OPERATOR CLASS c USING btree CASCADE",
                "DROP OPERATOR FAMILY f USING btree CASCADE",
                "DROP CAST (int AS mood) CASCADE",
                "DROP SCHEMA app CASCADE",
                "DROP SEQUENCE s CASCADE",
                "DROP VIEW v CASCADE",
                "DROP MATERIALIZED VIEW mv CASCADE",
                "DROP SERVER s CASCADE",
                "DROP FOREIGN DATA WRAPPER w CASCADE",
                "DROP LANGUAGE l CASCADE",
                "DROP TRANSFORM FOR int LANGUAGE sql CASCADE",
            ],
        );
        let f = run(&RULE, "DROP SCHEMA app CASCADE", &Ctx::default()).expect("flagged");
        assert!(f.message.contains("every table"), "{}", f.message);
    }
}

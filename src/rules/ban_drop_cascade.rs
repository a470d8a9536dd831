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
//! - **Nothing depends on it:** not flagged when the live catalog confirms that CASCADE drops
//!   nothing RESTRICT would not (functions, procedures, routines, aggregates, types, domains,
//!   schemas, extensions, views, materialized views, sequences — a view another view, a
//!   materialized view or an SQL-standard function body reads, or a sequence a column default
//!   calls, is a dependent; a materialized view's own indexes are not): the server resolved
//!   every object named — every candidate of an
//!   unqualified name on the search path, each overload of a function — and `pg_depend` shows
//!   no dependent outside what PostgreSQL drops with the object anyway (see
//!   [`crate::catalog::DropFacts`]); or, with `IF EXISTS`, no object of that name exists in
//!   any schema. Never on names alone: without facts (offline `check`, catalog reads off, a
//!   name that is not a plain name, facts an earlier statement of the same message may have
//!   changed, inside a function body), a function name without arguments that several
//!   functions share (PostgreSQL would refuse it as not unique), or any dependent at all, it
//!   is flagged — and the message says what depends on the object when the catalog said.
//!
//! <https://www.postgresql.org/docs/current/ddl-depend.html>

use super::{Action, Context, Finding, Rule};
use crate::catalog::Facts;
use crate::sql::statement::{Ddl, DdlKind, DropObject};

pub static RULE: Rule = Rule {
    id: "ban-drop-cascade",
    lock: "ACCESS EXCLUSIVE on every dependent table, none of them named",
    summary: "DROP TYPE / DOMAIN / FUNCTION / SCHEMA / EXTENSION / … CASCADE (drops dependent columns and tables), unless the catalog shows nothing depends on it",
    default_action: Action::Block,
    check,
};

/// What the catalog says about the objects of one `DROP … CASCADE`.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// Confirmed: CASCADE drops nothing RESTRICT would not.
    Harmless,
    /// Things depend on it: how many, and a few names.
    Dependents(u64, Vec<String>),
    /// Not confirmed either way (no facts, ambiguous, not found, internal part of another).
    Unknown,
}

fn verdict(objects: &[DropObject], if_exists: bool, functions: bool, facts: &Facts) -> Verdict {
    if facts.drops.len() != objects.len() {
        return Verdict::Unknown;
    }
    let (mut count, mut names, mut unknown) = (0u64, Vec::new(), false);
    for (o, f) in objects.iter().zip(&facts.drops) {
        if f.asked != o.name {
            return Verdict::Unknown;
        }
        if f.candidates == 0 {
            // Missing everywhere: with IF EXISTS, PostgreSQL skips it with a notice.
            unknown |= !if_exists || f.anywhere;
            continue;
        }
        // Without an argument list a function name must be unique, or PostgreSQL refuses it.
        unknown |= functions && !o.args && f.candidates > 1;
        unknown |= f.escapes > 0;
        count += f.dependents;
        names.extend(f.names.iter().cloned());
    }
    if count > 0 {
        names.truncate(5);
        Verdict::Dependents(count, names)
    } else if unknown {
        Verdict::Unknown
    } else {
        Verdict::Harmless
    }
}

fn check(ddl: &Ddl, ctx: &Context) -> Option<Finding> {
    let DdlKind::DropCascade {
        tag,
        if_exists,
        objects,
    } = &ddl.kind
    else {
        return None;
    };
    let functions = matches!(
        tag.as_str(),
        "DROP FUNCTION" | "DROP PROCEDURE" | "DROP ROUTINE" | "DROP AGGREGATE"
    );
    let verdict = match (objects, ctx.catalog) {
        // In a function body the statement runs later, when the facts may no longer hold.
        (Some(objects), Some(facts)) if !ctx.in_function_body => {
            verdict(objects, *if_exists, functions, facts)
        }
        _ => Verdict::Unknown,
    };
    let known = match verdict {
        Verdict::Harmless => return None,
        Verdict::Dependents(n, names) => {
            let more = if (names.len() as u64) < n {
                ", …"
            } else {
                ""
            };
            format!(
                " The catalog shows {n} dependent object{s} CASCADE would drop: {list}{more}.",
                s = if n == 1 { "" } else { "s" },
                list = names.join(", ")
            )
        }
        Verdict::Unknown => String::new(),
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
            "{tag} … CASCADE also drops {reach}, in tables the statement never names.{known}"
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
    use crate::catalog::DropFacts;
    use crate::rules::testing::{Ctx, run, table};
    use crate::sql::statement::Name;

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

    fn drop_facts(name: &str, candidates: u64, anywhere: bool, dependents: u64) -> DropFacts {
        DropFacts {
            asked: Name::bare(name),
            candidates,
            anywhere,
            dependents,
            escapes: 0,
            names: (0..dependents.min(5))
                .map(|i| format!("view v{i}"))
                .collect(),
        }
    }

    fn with(drops: Vec<DropFacts>) -> Ctx {
        Ctx {
            catalog: Some(Facts {
                drops,
                ..Facts::default()
            }),
            ..Ctx::in_tx()
        }
    }

    #[test]
    fn passes_only_what_the_catalog_confirms_nothing_depends_on() {
        let none = |n: &str| drop_facts(n, 1, true, 0);
        // Confirmed: one object each, no dependent.
        for (sql, drops) in [
            ("DROP FUNCTION f(int) CASCADE", vec![none("f")]),
            ("DROP FUNCTION f CASCADE", vec![none("f")]),
            ("DROP TYPE a, b CASCADE", vec![none("a"), none("b")]),
            ("DROP SCHEMA s CASCADE", vec![none("s")]),
            ("DROP EXTENSION e CASCADE", vec![none("e")]),
            // Every overload of f checked, none has a dependent.
            (
                "DROP FUNCTION f(int) CASCADE",
                vec![drop_facts("f", 3, true, 0)],
            ),
            // A view, a materialized view and a sequence nothing uses.
            ("DROP VIEW v CASCADE", vec![none("v")]),
            ("DROP MATERIALIZED VIEW mv CASCADE", vec![none("mv")]),
            ("DROP SEQUENCE s CASCADE", vec![none("s")]),
            // IF EXISTS on a name no schema holds.
            (
                "DROP DOMAIN IF EXISTS d CASCADE",
                vec![drop_facts("d", 0, false, 0)],
            ),
        ] {
            assert_eq!(run(&RULE, sql, &with(drops)), None, "{sql}");
        }
        for (sql, drops) in [
            // Something depends on it.
            (
                "DROP FUNCTION f(int) CASCADE",
                vec![drop_facts("f", 1, true, 2)],
            ),
            (
                "DROP TYPE a, b CASCADE",
                vec![none("a"), drop_facts("b", 1, true, 1)],
            ),
            // Ambiguous: no argument list, several functions of that name.
            ("DROP FUNCTION f CASCADE", vec![drop_facts("f", 2, true, 0)]),
            // Not found on the search path, but some schema has one (a pg_temp.x, say).
            (
                "DROP TYPE IF EXISTS x CASCADE",
                vec![drop_facts("x", 0, true, 0)],
            ),
            // Missing without IF EXISTS.
            ("DROP TYPE x CASCADE", vec![drop_facts("x", 0, false, 0)]),
            // Facts for another name, or for fewer objects than named.
            ("DROP TYPE x CASCADE", vec![none("y")]),
            ("DROP TYPE a, b CASCADE", vec![none("a")]),
            // An internal part of something else.
            (
                "DROP TYPE x CASCADE",
                vec![DropFacts {
                    escapes: 1,
                    ..none("x")
                }],
            ),
            // A kind ddlgate does not resolve.
            ("DROP SERVER v CASCADE", vec![none("v")]),
            // A view another view reads.
            ("DROP VIEW v CASCADE", vec![drop_facts("v", 1, true, 1)]),
        ] {
            assert!(run(&RULE, sql, &with(drops)).is_some(), "{sql}");
        }
        // No facts at all (offline check), and inside a function body.
        assert!(run(&RULE, "DROP TYPE x CASCADE", &Ctx::in_tx()).is_some());
        let mut body = with(vec![none("x")]);
        body.in_function_body = true;
        assert!(run(&RULE, "DROP TYPE x CASCADE", &body).is_some());
    }

    #[test]
    fn the_message_names_the_dependents() {
        let f = run(
            &RULE,
            "DROP FUNCTION f(int) CASCADE",
            &with(vec![drop_facts("f", 1, true, 7)]),
        )
        .expect("flagged");
        assert!(
            f.message
                .contains("7 dependent objects CASCADE would drop: view v0, view v1, view v2, view v3, view v4, …"),
            "{}",
            f.message
        );
        let f = run(
            &RULE,
            "DROP TYPE t CASCADE",
            &with(vec![drop_facts("t", 1, true, 1)]),
        )
        .expect("flagged");
        assert!(
            f.message
                .ends_with("1 dependent object CASCADE would drop: view v0."),
            "{}",
            f.message
        );
    }
}

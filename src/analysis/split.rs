//! A multi-action `ALTER TABLE`, decided action by action (issue 12): each action is checked by
//! the rules as an `ALTER TABLE` of its own, under the policy and the override comments of the
//! whole statement, and becomes its steps — as written when the policy allows it alone, its
//! recipe when the rule asks for one — or is named as the reason the statement stays blocked.
//!
//! Why the split is sound: `recipe::split` reads each action back as exactly what the whole was
//! understood to hold, and refuses a written order PostgreSQL would not follow. What the
//! catalog said about the table's columns was read before the statement: an earlier action can
//! change it (`DROP CONSTRAINT` of the CHECK that made `SET NOT NULL` instant, a type change
//! before another one), so every action after the first is decided without the column facts —
//! as a linter would, assuming the worst — and an action the facts alone made safe cannot
//! claim the split. Work is linear in the statement: one re-read per action, the override
//! comments read once for the whole.

use bytes::BytesMut;

use super::respond::{truncated, warnings};
use crate::policy::{Decision, Profile};
use crate::recipe::split::{self, Action};
use crate::recipe::{self, Recipe, RecipeKind, Step};
use crate::rules::{self, Action as Verdict, Rewrite};
use crate::sql::lexer::LexOptions;
use crate::sql::statement::{Ddl, DdlKind};

/// Most unsafe actions named one by one in a refusal; the rest are counted.
pub const MAX_NAMED_ACTIONS: usize = 10;

/// Longest action text quoted in a message.
const ACTION_TEXT_MAX: usize = 80;

/// An action that keeps the statement from being split.
#[derive(Debug, Clone)]
pub(super) struct Unsafe {
    position: usize,
    text: String,
    /// The rules that stop it (empty when no rule does, but it cannot be made resumable).
    rules: Vec<&'static str>,
    reason: String,
}

/// What the actions of a multi-action `ALTER TABLE` come to.
pub(super) enum Outcome {
    /// Every action can run on its own: the steps, in the written order, and the warnings
    /// the actions get on their own (at most [`MAX_NAMED_ACTIONS`], the rest counted).
    Steps(Recipe, Vec<BytesMut>),
    /// These actions cannot (of `total`).
    Unsafe { unsafe_: Vec<Unsafe>, total: usize },
}

/// Everything the per-action decisions need from the statement's own.
pub(super) struct Whole<'a> {
    pub sql: &'a [u8],
    pub from: usize,
    pub end: usize,
    pub lex: LexOptions,
    pub ddl: &'a Ddl,
    pub profile: &'a Profile,
    pub decision: &'a Decision,
    pub rctx: &'a rules::Context<'a>,
}

/// A multi-action `ALTER TABLE` (two or more actions)?
pub(super) fn is_multi_action(ddl: &Ddl) -> bool {
    matches!(&ddl.kind, DdlKind::AlterTable { ops, .. } if ops.len() > 1)
}

/// The facts without what they say about columns.
pub(super) fn without_columns(f: &crate::catalog::Facts) -> crate::catalog::Facts {
    crate::catalog::Facts {
        columns: Vec::new(),
        ..f.clone()
    }
}

/// An `ALTER TABLE` whose actions make the column facts read before it stale for one another:
/// it drops a constraint (the valid `CHECK (c IS NOT NULL)` a `SET NOT NULL` would rely on), or
/// two actions name the same column.
pub(super) fn stale_columns(ddl: &Ddl) -> bool {
    let DdlKind::AlterTable { ops, .. } = &ddl.kind else {
        return false;
    };
    if ops.len() < 2 {
        return false;
    }
    if ops
        .iter()
        .any(|op| matches!(op, crate::sql::statement::AlterOp::DropConstraint { .. }))
    {
        return true;
    }
    let mut seen = std::collections::HashSet::new();
    ops.iter()
        .filter_map(split::column_of)
        .any(|c| !seen.insert(c))
}

/// Decides every action of `whole.ddl` on its own. `recipes`: planning the steps (outside a
/// transaction block, the statement alone); otherwise only the actions the policy blocks are
/// collected, to be named. `Err` when the statement cannot be split at all (why, in words).
pub(super) fn decide_actions(
    whole: &Whole<'_>,
    recipe_ctx: Option<&recipe::Context<'_>>,
) -> Result<Outcome, String> {
    let actions = split::actions(whole.sql, whole.from, whole.end, whole.lex, whole.ddl)
        .map_err(|e| e.to_string())?;
    let ops: Vec<_> = actions.iter().filter_map(Action::op).cloned().collect();
    if let Some((a, b)) = split::out_of_order(&ops)
        && let (Some(first), Some(later)) = (actions.get(a - 1), actions.get(b - 1))
    {
        return Err(format!(
            "PostgreSQL runs action {b} ({}) before action {a} ({}) whatever the order written, so one statement per action in that order would not do what this statement does; write the actions in the order PostgreSQL runs them (drops, type changes, new columns, column attributes, constraints and defaults, the rest), or one ALTER TABLE per action",
            quoted(&later.text),
            quoted(&first.text)
        ));
    }
    // Facts about columns hold for the first action only (see the module doc).
    let without_columns = whole.rctx.catalog.map(without_columns);
    let mut steps: Vec<Step> = Vec::new();
    let mut unsafe_ = Vec::new();
    let mut warned: Vec<BytesMut> = Vec::new();
    let mut unshown = 0usize;
    let total = actions.len();
    for action in &actions {
        let catalog = if action.position == 1 {
            whole.rctx.catalog
        } else {
            without_columns.as_ref()
        };
        let rctx = rules::Context {
            catalog,
            ..*whole.rctx
        };
        let findings = rules::check(&action.ddl, &rctx);
        let d = whole
            .profile
            .decide_with(whole.decision.overrides.clone(), findings);
        let stop = |rules: Vec<&'static str>, reason: String| Unsafe {
            position: action.position,
            text: action.text.clone(),
            rules,
            reason,
        };
        let ids = |of: Verdict| -> Vec<&'static str> {
            d.verdicts
                .iter()
                .filter(|v| v.action == of)
                .map(|v| v.finding.rule)
                .collect()
        };
        let first_message = |of: Verdict| {
            d.verdicts
                .iter()
                .find(|v| v.action == of)
                .map(|v| v.finding.message.clone())
                .unwrap_or_default()
        };
        match d.effective {
            Verdict::Block => {
                unsafe_.push(stop(ids(Verdict::Block), first_message(Verdict::Block)))
            }
            _ if recipe_ctx.is_none() => {}
            Verdict::Rewrite if d.rewrite == Some(Rewrite::Steps) => {
                let ctx = recipe_ctx.expect("invariant: checked just above");
                match recipe::plan(
                    action.sql.as_bytes(),
                    0,
                    action.sql.len(),
                    whole.lex,
                    &action.ddl,
                    ctx,
                ) {
                    Ok(r) => steps.extend(r.steps),
                    Err(e) => unsafe_.push(stop(
                        ids(Verdict::Rewrite),
                        format!(
                            "{} ddlgate has no safe steps for it: {e}.",
                            first_message(Verdict::Rewrite)
                        ),
                    )),
                }
            }
            Verdict::Rewrite => unsafe_.push(stop(
                ids(Verdict::Rewrite),
                format!(
                    "{} Its safe form is a single statement of its own.",
                    first_message(Verdict::Rewrite)
                ),
            )),
            Verdict::Allow | Verdict::Warn => {
                // What the action would be warned about alone, it is warned about split.
                for w in warnings(&d, whole.profile) {
                    if warned.len() < MAX_NAMED_ACTIONS {
                        warned.push(w);
                    } else {
                        unshown += 1;
                    }
                }
                let table = match &action.ddl.kind {
                    DdlKind::AlterTable { name, .. } => name.clone(),
                    _ => return Err("an action did not read back as an ALTER TABLE".to_owned()),
                };
                match split::brief_step(&table, action) {
                    Ok(step) => steps.push(step),
                    Err(why) => {
                        unsafe_.push(stop(Vec::new(), format!("as its own statement, {why}.")))
                    }
                }
            }
        }
    }
    if !unsafe_.is_empty() || recipe_ctx.is_none() {
        return Ok(Outcome::Unsafe { unsafe_, total });
    }
    let target = match &whole.ddl.kind {
        DdlKind::AlterTable { name, .. } => name.clone(),
        _ => return Err("not an ALTER TABLE".to_owned()),
    };
    if unshown > 0 {
        warned.push(crate::act::notice(
            "WARNING",
            &format!(
                "ddlgate: {unshown} more warnings about this statement's actions are not shown"
            ),
            None,
            Some("Run the statement through `ddlgate check` to see every finding."),
        ));
    }
    Ok(Outcome::Steps(
        Recipe {
            kind: RecipeKind::SplitAlterTable,
            target,
            steps,
        },
        warned,
    ))
}

fn quoted(text: &str) -> String {
    format!("`{}`", truncated(text.as_bytes(), ACTION_TEXT_MAX))
}

/// The unsafe actions for the error's message: positions, text and rules, at most
/// [`MAX_NAMED_ACTIONS`].
pub(super) fn named(unsafe_: &[Unsafe], total: usize) -> String {
    let mut parts: Vec<String> = unsafe_
        .iter()
        .take(MAX_NAMED_ACTIONS)
        .map(|u| {
            let rules = if u.rules.is_empty() {
                "cannot be resumed".to_owned()
            } else {
                u.rules.join(", ")
            };
            format!("{} {} ({rules})", u.position, quoted(&u.text))
        })
        .collect();
    if unsafe_.len() > MAX_NAMED_ACTIONS {
        parts.push(format!("and {} more", unsafe_.len() - MAX_NAMED_ACTIONS));
    }
    format!(
        "{} of its {total} actions cannot run on their own safely: action {}",
        unsafe_.len(),
        parts.join("; action ")
    )
}

/// The unsafe actions for the error's DETAIL: each with its reason, at most
/// [`MAX_NAMED_ACTIONS`].
pub(super) fn reasons(unsafe_: &[Unsafe]) -> String {
    let mut out: Vec<String> = unsafe_
        .iter()
        .take(MAX_NAMED_ACTIONS)
        .map(|u| format!("Action {} {}: {}", u.position, quoted(&u.text), u.reason))
        .collect();
    if unsafe_.len() > MAX_NAMED_ACTIONS {
        out.push(format!(
            "{} more unsafe actions are not listed.",
            unsafe_.len() - MAX_NAMED_ACTIONS
        ));
    }
    out.join("\n")
}

#[cfg(test)]
mod tests {
    use super::super::*;
    use super::MAX_NAMED_ACTIONS;
    use crate::catalog::testing::{column, facts, table};
    use crate::config::Config;
    use crate::policy::Policy;

    /// The plan of `sql` alone in a simple Query, with `facts` for it (a 30,000-row table `t`
    /// by default: above the small-table thresholds).
    fn plan(sql: &str, tx: TxStatus, f: Option<crate::catalog::Facts>) -> Plan {
        let counters = Counters::default();
        let policy = Policy::from_config(&Config::default());
        let mut a = Analyzer::default();
        let f = f.unwrap_or_else(|| facts(table("t", 30_000, 4 << 20), vec![]));
        a.provide_facts(vec![(0, f)]);
        a.analyze(
            &counters,
            policy.profile_for("", "", ""),
            Source::Query,
            sql.as_bytes(),
            &Context {
                tx,
                lex: LexOptions::default(),
                server_version: Some(150_000),
                pipelined: false,
                tool: None,
            },
        )
        .1
    }

    fn blocked(p: &Plan) -> String {
        String::from_utf8_lossy(p.sql.as_deref().expect("blocked")).into_owned()
    }

    #[test]
    fn multi_action_alters_split_into_one_statement_per_action() {
        let cases: &[(&str, &[&str])] = &[
            (
                "ALTER TABLE t ADD COLUMN c int, ADD CONSTRAINT t_c_chk CHECK (c > 0)",
                &[
                    "ALTER TABLE t ADD COLUMN c int",
                    "ALTER TABLE t ADD CONSTRAINT t_c_chk CHECK (c > 0) NOT VALID",
                    "ALTER TABLE t VALIDATE CONSTRAINT t_c_chk",
                ],
            ),
            (
                "ALTER TABLE t DROP CONSTRAINT t_fk, ADD CONSTRAINT t_fk FOREIGN KEY (id) REFERENCES refd(id)",
                &[
                    "ALTER TABLE t DROP CONSTRAINT t_fk",
                    "ALTER TABLE t ADD CONSTRAINT t_fk FOREIGN KEY (id) REFERENCES refd(id) NOT VALID",
                    "ALTER TABLE t VALIDATE CONSTRAINT t_fk",
                ],
            ),
            (
                "ALTER TABLE t ADD COLUMN e text, ADD CONSTRAINT t_e_key UNIQUE (e)",
                &[
                    "ALTER TABLE t ADD COLUMN e text",
                    "DROP INDEX CONCURRENTLY IF EXISTS t_e_key",
                    "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS t_e_key ON t (e)",
                    "ALTER TABLE t ADD CONSTRAINT t_e_key UNIQUE USING INDEX t_e_key",
                ],
            ),
            (
                "ALTER TABLE t ADD COLUMN c int DEFAULT 0, ALTER COLUMN c SET NOT NULL, ALTER COLUMN c SET DEFAULT 1",
                &[
                    "ALTER TABLE t ADD COLUMN c int DEFAULT 0",
                    "ALTER TABLE t ADD CONSTRAINT t_c_ddlgate_nn CHECK (c IS NOT NULL) NOT VALID",
                    "ALTER TABLE t VALIDATE CONSTRAINT t_c_ddlgate_nn",
                    "ALTER TABLE t ALTER COLUMN c SET NOT NULL",
                    "ALTER TABLE t DROP CONSTRAINT IF EXISTS t_c_ddlgate_nn",
                    "ALTER TABLE t ALTER COLUMN c SET DEFAULT 1",
                ],
            ),
        ];
        for (sql, want) in cases {
            let p = plan(sql, TxStatus::Idle, None);
            assert!(
                p.sql.is_none(),
                "{sql}: {:?}",
                p.sql.as_deref().map(String::from_utf8_lossy)
            );
            let r = p
                .recipe
                .as_ref()
                .unwrap_or_else(|| panic!("{sql}: no recipe"));
            assert_eq!(r.kind, crate::recipe::RecipeKind::SplitAlterTable);
            let got: Vec<&str> = r.steps.iter().map(|s| s.sql.as_str()).collect();
            assert_eq!(got, *want, "{sql}");
            // Every step that could not simply run again has a precheck.
            for s in &r.steps {
                let again = s.sql.contains("SET DEFAULT")
                    || s.sql.contains("SET NOT NULL")
                    || s.sql.contains("IF EXISTS")
                    || s.sql.contains("VALIDATE");
                assert!(again || s.skip_if.is_some(), "{}", s.sql);
            }
        }
    }

    #[test]
    fn unsafe_actions_are_each_named() {
        // (statement, transaction status, words the error must hold)
        let cases: &[(&str, TxStatus, &[&str])] = &[
            (
                "ALTER TABLE t ALTER COLUMN a TYPE bigint, ALTER COLUMN b TYPE bigint, ADD CONSTRAINT k CHECK (a > 0)",
                TxStatus::Idle,
                &[
                    "2 of its 3 actions cannot run on their own safely",
                    "action 1 `ALTER COLUMN a TYPE bigint` (changing-column-type)",
                    "action 2 `ALTER COLUMN b TYPE bigint` (changing-column-type)",
                ],
            ),
            (
                "ALTER TABLE t ADD COLUMN c int, ADD CONSTRAINT k CHECK (c > 0)",
                TxStatus::InTransaction,
                &[
                    "1 of its 2 actions",
                    "action 2 `ADD CONSTRAINT k CHECK (c > 0)` (constraint-missing-not-valid)",
                ],
            ),
            (
                "ALTER TABLE t ADD CHECK (a > 0) NOT VALID, ADD CONSTRAINT k CHECK (b > 0)",
                TxStatus::Idle,
                &[
                    "action 1 `ADD CHECK (a > 0) NOT VALID` (cannot be resumed)",
                    "name it with CONSTRAINT",
                ],
            ),
            (
                "ALTER TABLE t ADD CONSTRAINT k CHECK (c > 0), ADD COLUMN c int",
                TxStatus::Idle,
                &["PostgreSQL runs action 2 (`ADD COLUMN c int`) before action 1"],
            ),
            (
                "ALTER TABLE IF EXISTS t ADD COLUMN c int, ADD CONSTRAINT k CHECK (c > 0)",
                TxStatus::Idle,
                &["ALTER TABLE IF EXISTS with several actions is not supported"],
            ),
            (
                "ALTER TABLE ONLY t ADD COLUMN c int, ADD CONSTRAINT k CHECK (c > 0)",
                TxStatus::Idle,
                &["ALTER TABLE ONLY with several actions is not supported"],
            ),
            (
                "ALTER TABLE t ADD COLUMN c int, ADD CONSTRAINT k CHECK (c > 0), OWNER TO bob",
                TxStatus::Idle,
                &[
                    "action 3 `OWNER TO bob` (cannot be resumed)",
                    "send the actions named in the message as ALTER TABLE statements of their own",
                ],
            ),
        ];
        for (sql, tx, words) in cases {
            let p = plan(sql, *tx, None);
            assert!(p.recipe.is_none(), "{sql}");
            let err = blocked(&p);
            for w in *words {
                assert!(err.contains(w), "{sql}: {w:?} in {err}");
            }
        }
    }

    /// An action only the catalog's facts make safe cannot claim the split once an earlier
    /// action changed those facts: SET NOT NULL is instant with a valid CHECK (c IS NOT NULL)
    /// — unless the same statement drops that CHECK first.
    #[test]
    fn facts_an_earlier_action_changes_are_not_trusted() {
        let with_check = || {
            let mut c = column("c", "integer", 23, -1);
            c.valid_not_null_check = true;
            c.checks = vec!["c_nn".to_owned()];
            Some(facts(table("t", 30_000, 4 << 20), vec![c]))
        };
        // Alone, with the check: allowed as written (no recipe, no block).
        let p = plan(
            "ALTER TABLE t ALTER COLUMN c SET NOT NULL",
            TxStatus::Idle,
            with_check(),
        );
        assert!(p.sql.is_none() && p.recipe.is_none());
        // After dropping that check in the same statement: the NOT NULL recipe, never the
        // bare SET NOT NULL that would scan under ACCESS EXCLUSIVE.
        let p = plan(
            "ALTER TABLE t DROP CONSTRAINT c_nn, ALTER COLUMN c SET NOT NULL",
            TxStatus::Idle,
            with_check(),
        );
        let r = p.recipe.expect("split");
        assert!(
            r.steps[1].sql.contains("CHECK (c IS NOT NULL) NOT VALID"),
            "{r:?}"
        );
        // In a transaction: blocked, naming the SET NOT NULL.
        let p = plan(
            "ALTER TABLE t DROP CONSTRAINT c_nn, ALTER COLUMN c SET NOT NULL",
            TxStatus::InTransaction,
            with_check(),
        );
        assert!(
            blocked(&p)
                .contains("action 2 `ALTER COLUMN c SET NOT NULL` (adding-not-nullable-field)")
        );
    }

    /// An action with a warning alone keeps it when split (DROP COLUMN: ban-drop-column), and
    /// thousands of them do not flood the client.
    #[test]
    fn split_actions_keep_their_warnings_bounded() {
        let p = plan(
            "ALTER TABLE t DROP COLUMN old, ADD CONSTRAINT k CHECK (a > 0)",
            TxStatus::Idle,
            None,
        );
        assert!(p.recipe.is_some());
        let texts: Vec<String> = p
            .notices
            .iter()
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .collect();
        assert!(
            texts.iter().any(|t| t.contains("ban-drop-column")),
            "{texts:?}"
        );
        let actions: Vec<String> = (0..3000).map(|i| format!("DROP COLUMN c{i}")).collect();
        let sql = format!(
            "ALTER TABLE t {}, ADD CONSTRAINT k CHECK (a > 0)",
            actions.join(", ")
        );
        let p = plan(&sql, TxStatus::Idle, None);
        assert!(p.recipe.is_some());
        // The rewrite notice, at most MAX_NAMED_ACTIONS warnings, and the count of the rest.
        assert_eq!(p.notices.len(), 1 + MAX_NAMED_ACTIONS + 1);
        let last = String::from_utf8_lossy(p.notices.last().expect("notice")).into_owned();
        assert!(
            last.contains(&format!("{} more warnings", 3000 - MAX_NAMED_ACTIONS)),
            "{last}"
        );
    }

    /// 5,000 actions are decided in linear time, and the NOTICE and the error stay bounded.
    #[test]
    fn thousands_of_actions_are_bounded() {
        let n = 5_000;
        let many = |action: &dyn Fn(usize) -> String| {
            let actions: Vec<String> = (0..n).map(action).collect();
            format!("ALTER TABLE t {}", actions.join(", "))
        };
        let sql = many(&|i| format!("ADD CONSTRAINT k{i} CHECK (c{i} > 0)"));
        let t0 = std::time::Instant::now();
        let p = plan(&sql, TxStatus::Idle, None);
        let took = t0.elapsed();
        let r = p.recipe.expect("split");
        assert_eq!(r.steps.len(), 2 * n);
        assert!(took < std::time::Duration::from_secs(20), "{took:?}");
        let notice: usize = p.notices.iter().map(|b| b.len()).sum();
        assert!(notice < 16 * 1024, "NOTICE of {notice} bytes");
        assert!(r.describe().contains(&format!(
            "and {} more steps",
            2 * n - crate::recipe::MAX_LISTED_STEPS
        )));

        let sql = many(&|i| format!("ALTER COLUMN c{i} TYPE bigint"));
        let p = plan(&sql, TxStatus::Idle, None);
        let err = blocked(&p);
        assert!(err.len() < 16 * 1024, "error of {} bytes", err.len());
        assert!(err.contains(&format!("{n} of its {n} actions")), "{err}");
        assert!(
            err.contains(&format!("and {} more", n - MAX_NAMED_ACTIONS)),
            "{err}"
        );
    }

    /// `DROP INDEX a, b, …` steps name each index as the server resolved it; a name the
    /// catalog shows is not an index refuses the split (the statement would drop nothing).
    #[test]
    fn dropped_indexes_are_named_as_the_server_resolved_them() {
        use crate::catalog::{RelKind, Relation};
        use crate::sql::statement::Name;
        let rel = |asked: &str, schema: &str, kind| Relation {
            name: Some(Name::new(Some(schema), asked)),
            kind: Some(kind),
            ..table(asked, 30_000, 4 << 20)
        };
        let f = crate::catalog::Facts {
            referenced: vec![
                rel("b", "s", RelKind::Index),
                Relation::missing(Name::bare("c")),
                rel("t", "public", RelKind::Table),
            ],
            ..facts(rel("a", "public", RelKind::Index), vec![])
        };
        let cases: &[(&str, Result<&[&str], &str>)] = &[
            (
                "DROP INDEX a, b, c",
                Ok(&[
                    "DROP INDEX CONCURRENTLY public.a",
                    "DROP INDEX CONCURRENTLY s.b",
                    "DROP INDEX CONCURRENTLY c",
                ]),
            ),
            ("DROP INDEX a, t", Err("t is not an index")),
        ];
        for (sql, want) in cases {
            let p = plan(sql, TxStatus::Idle, Some(f.clone()));
            match want {
                Ok(steps) => {
                    let r = p.recipe.unwrap_or_else(|| panic!("{sql}: no recipe"));
                    let got: Vec<&str> = r.steps.iter().map(|s| s.sql.as_str()).collect();
                    assert_eq!(got, *steps, "{sql}");
                }
                Err(words) => {
                    assert!(p.recipe.is_none(), "{sql}");
                    assert!(blocked(&p).contains(words), "{sql}: {}", blocked(&p));
                }
            }
        }
    }
}

//! [`decide`](super::decide): the pure decision on a prepared message — rules, policy, the
//! rewrite or recipe it becomes ([`realize`]), the guard's retry policy, the new text.

use super::*;
use std::collections::HashSet;

use crate::act::{self, BlockError};
use crate::guard::Retry;
use crate::policy::{self, Profile};
use crate::protocol::TxStatus;
use crate::rewrite;
use crate::rules::{self, Action};
use crate::sql::lexer::{self, LexOptions, StatementSpan, Token};
use crate::sql::parse;
use crate::sql::prefilter::{self, StatementClass};
use crate::sql::statement::{Ddl, DdlKind, Name, Understood};

/// Decides one prepared message: pure — no counters, no I/O, no logs (see [`record`]). The
/// proxy and `ddlgate check` both call it.
pub fn decide(
    prepared: &Prepared,
    sql: &[u8],
    facts: Facts,
    ctx: &Context,
    profile: &Profile,
    source: Source,
    created: Created<'_>,
) -> Decided {
    let mut decided = Decided {
        tally: Tally {
            source,
            ..Tally::default()
        },
        ..Decided::default()
    };
    if prepared.statements > prepared.spans.len() {
        // Not every statement was kept: assume the worst of those not looked at.
        decided.effects.settings = true;
        decided.effects.lexing = true;
    }
    if prepared.unverifiable() {
        refuse_unverifiable(prepared, profile, sql, ctx, &mut decided);
        return decided;
    }
    let spans = &prepared.spans;
    // Only non-empty statements are kept (see `prepare`), all of them unless the message
    // has more than are analysed and none of them is DDL.
    let statements = spans.len();
    let classes = prepared
        .classes
        .iter()
        .map(|&c| prefilter::for_server(c, ctx.server_version));
    let any_ddl = prepared
        .classes
        .iter()
        .any(|&c| prefilter::for_server(c, ctx.server_version) == StatementClass::DdlCandidate);
    let Facts {
        catalog,
        identity,
        estimates,
    } = facts;
    // The created-in-transaction bookkeeping: the session's (by OID, from the server's
    // answer) or the file's (by name). What a message does to names and facts matters only
    // to its own DDL and to relations the transaction created: ordinary traffic in a
    // transaction that created nothing (and with no answer to confirm) changes nothing
    // there, and is not looked at again (the hot path).
    let (mut session, mut offline, mut offline_added) = match created {
        Created::Session {
            tracker,
            max_created,
        } if identity.is_some() || any_ddl || !tracker.is_empty() => {
            let scope = crate::created::Scope::begin(tracker, identity, max_created, ctx.lex);
            (Some((tracker, scope)), None, None)
        }
        Created::Session { .. } => (None, None, None),
        Created::Offline(names, added) => (None, Some(names), Some(added)),
    };
    let scoped = session
        .as_ref()
        .is_some_and(|(tracker, _)| !tracker.is_empty() || any_ddl);
    decided.summary.statements = prepared.statements;
    let summary = &mut decided.summary;
    let plan = &mut decided.plan;
    // Replacement text per statement, by span index.
    let mut replacements: Vec<(usize, Vec<u8>)> = Vec::new();
    // The transaction status as it evolves through a multi-statement Query.
    let mut tx = ctx.tx;
    // Transaction-control statements, for deciding how a guarded Query can be retried.
    let mut tx_control = Vec::new();
    // Constraints added NOT VALID by earlier statements of this message, while in one
    // transaction (`validate-in-same-transaction`).
    // Offline, those of earlier messages of the file's transaction too (the proxy reads them
    // from the catalog instead).
    let mut added: Vec<rules::AddedNotValid> = offline_added
        .as_deref_mut()
        .map(std::mem::take)
        .unwrap_or_default();
    for (i, (span, class)) in spans.iter().zip(classes).enumerate() {
        decided.tally.statements[class.index()] += 1;
        let unprepared;
        let mut understood = None;
        let mut runs = true;
        let tokens = prepared.candidate(i).map(|c| c.tokens.as_slice());
        statement_effects(sql, span, ctx.lex, class, tokens, &mut decided.effects);
        match class {
            StatementClass::Transaction => {
                let before = tx;
                tx = transaction_effect(sql, span, ctx.lex, tx);
                tx_control.push((i, before, tx));
                if tx == TxStatus::Idle {
                    // COMMIT or ROLLBACK: what came before holds no lock any more.
                    added.clear();
                }
                if let Some(names) = offline.as_deref_mut()
                    && ends_transaction(sql, span, ctx.lex, tx)
                {
                    names.clear();
                }
            }
            StatementClass::DdlCandidate => {
                summary.ddl_candidates += 1;
                // `prepare` understood every DDL candidate; a `Prepared` built otherwise gets
                // its statement understood here rather than waved through.
                let candidate = match prepared.candidate(i) {
                    Some(c) => c,
                    None => {
                        let tokens = lexer::tokens(sql, span.start, span.end, ctx.lex);
                        unprepared = Candidate {
                            index: i,
                            ddl: parse::understand_tokens(
                                sql, &tokens, span.start, span.end, ctx.lex,
                            ),
                            tokens,
                        };
                        &unprepared
                    }
                };
                let ddl = &candidate.ddl;
                let mut resized = None;
                let mut emptied = None;
                let (facts, created) = match session.as_mut() {
                    Some((tracker, scope)) => {
                        // Facts read before the message, unless an earlier statement of it
                        // may have changed them (a SET TimeZone, a rename, …): then the worst
                        // case. In statement order, as `catalog_requests` produced them.
                        let facts = catalog
                            .binary_search_by_key(&span.start, |(at, _)| *at)
                            .ok()
                            .map(|k| &catalog[k].1)
                            .filter(|_| scope.facts_hold(ddl));
                        // A DO block's statements: only if nothing before the block in the
                        // message could have changed what was read (`rules::body::facts_plan`
                        // does the same inside the body).
                        let facts = facts.filter(|_| {
                            !matches!(ddl.kind, DdlKind::Do { .. }) || scope.untouched()
                        });
                        let facts = scope.sized(facts, &mut resized);
                        let facts = scope.with_empty_new(ddl, facts, &mut emptied);
                        (facts, scope.new_names(tracker, ddl))
                    }
                    None => (None, offline.as_deref().cloned().unwrap_or_default()),
                };
                // `ADD c … NOT VALID; VALIDATE c` as the whole of a lone Query outside a
                // transaction block, the first statement neither rewritten nor blocked: the
                // pair can run as two steps (checked again when the recipe is planned).
                let pair_with = (source == Source::Query
                    && ctx.tx == TxStatus::Idle
                    && !ctx.pipelined
                    && statements == 2
                    && i == 1
                    && tx_control.is_empty()
                    && replacements.is_empty()
                    && plan.recipe.is_none())
                .then(|| prepared.candidate(0).map(|c| (&spans[0], &c.ddl)))
                .flatten();
                if pair_with.is_some() {
                    // Only the one ADD before it (entries are recorded with `pair: false`).
                    for a in &mut added {
                        a.pair = true;
                    }
                }
                let one = DdlInput {
                    span,
                    tokens: &candidate.tokens,
                    ddl,
                    facts,
                    created: &created,
                    tx,
                    statements,
                    added: &added,
                    pair_with,
                    later: rules::later_window(sql, span.end, summary.ddl_candidates),
                };
                if let Some(replacement) = decide_statement(
                    profile,
                    sql,
                    &one,
                    ctx,
                    &mut decided.tally,
                    summary,
                    plan,
                    &mut decided.decisions,
                ) {
                    replacements.push((i, replacement));
                    runs = false;
                }
                if let Some((table, constraint, kind)) =
                    rules::validate_in_same_transaction::added_not_valid(ddl)
                {
                    added.push(rules::AddedNotValid {
                        table: table.clone(),
                        resolved: facts
                            .and_then(|f| f.relation_for(table))
                            .and_then(|r| r.name.clone()),
                        constraint: constraint.to_owned(),
                        kind,
                        small: facts.is_some_and(|f| {
                            f.relation_for(table)
                                .is_some_and(|r| r.is_small(&f.thresholds))
                        }),
                        pair: false,
                    });
                }
                if let Some(names) = offline.as_deref_mut()
                    && let DdlKind::CreateTable { name, .. } = &ddl.kind
                    && (tx != TxStatus::Idle || statements > 1 || ctx.pipelined)
                {
                    names.insert(name.clone());
                }
                understood = Some(ddl);
            }
            StatementClass::Dml => {
                summary.dml += 1;
                // The backfill guard: an UPDATE/DELETE the planner estimated (only when the
                // profile has it on; otherwise nothing was asked and nothing is here).
                if let Ok(k) = estimates.binary_search_by_key(&span.start, |(at, _)| *at)
                    && let Some(replacement) = match &estimates[k].1 {
                        crate::catalog::estimate::Answer::Rows(estimate) => decide_backfill(
                            profile,
                            sql,
                            span,
                            estimate,
                            ctx,
                            plan,
                            &mut decided.decisions,
                        ),
                        crate::catalog::estimate::Answer::Stopped { code, message } => {
                            Some(stopped_error(code, message).to_sql())
                        }
                    }
                {
                    replacements.push((i, replacement));
                    runs = false;
                }
            }
            // Forwarded: the server answers it with its own syntax error (42601).
            StatementClass::Session | StatementClass::NotACommand => {}
        }
        if scoped && let Some((tracker, scope)) = session.as_mut() {
            scope.after(tracker, sql, span, class, understood, tokens, runs);
        }
    }
    if let Some((tracker, scope)) = session
        && scoped
    {
        scope.finish(tracker);
    }
    if let Some(kept) = offline_added {
        // Still in the file's transaction after this message (the caller forgets them at
        // its end, as it forgets created tables).
        if tx != TxStatus::Idle || ctx.tx != TxStatus::Idle {
            for a in &mut added {
                a.pair = false;
            }
            *kept = added;
        }
    }
    if !replacements.is_empty() {
        plan.sql = Some(splice(sql, spans, &replacements));
    }
    if let Some(guard) = plan.guard.as_mut() {
        guard.retry = retry_mode(ctx.tx, source, &tx_control, statements);
    }
    decided.tally.multi_statement = source == Source::Query && summary.statements > 1;
    decided
}

/// A transaction-control statement that ends the file's transaction (what `ddlgate check`
/// forgets its created tables at): COMMIT, END, ABORT, and a ROLLBACK that leaves the block
/// (not ROLLBACK TO SAVEPOINT inside one).
pub(super) fn ends_transaction(
    sql: &[u8],
    span: &StatementSpan,
    lex: LexOptions,
    after: TxStatus,
) -> bool {
    let Some(first) = span.first else {
        return false;
    };
    if first.is_word(sql, "ROLLBACK") {
        return after == TxStatus::Idle || !is_rollback_to(sql, span, lex);
    }
    ["COMMIT", "END", "ABORT"]
        .iter()
        .any(|k| first.is_word(sql, k))
}

/// `ROLLBACK TO …`.
pub(super) fn is_rollback_to(sql: &[u8], span: &StatementSpan, lex: LexOptions) -> bool {
    lexer::Lexer::at(sql, span.start, lex)
        .take_while(|t| t.start < span.end)
        .filter(|t| !t.is_comment())
        .nth(1)
        .is_some_and(|t| t.is_word(sql, "TO"))
}

/// A message with more statements than are analysed, DDL among them: it cannot be
/// verified, so it fails closed as a whole (counted as not understood) — blocked in
/// enforce mode, a warning in warn mode, only logged in observe mode. Ordinary traffic
/// never gets here: a message without any DDL candidate is forwarded however long it is.
pub(super) fn refuse_unverifiable(
    prepared: &Prepared,
    profile: &Profile,
    sql: &[u8],
    ctx: &Context,
    decided: &mut Decided,
) {
    decided.tally.ddl_understood[understood_index(Understood::Unknown)] += 1;
    decided.unverifiable = Some((prepared.statements, prepared.max_statements));
    decided.summary = Summary {
        statements: prepared.statements,
        ddl_candidates: 1,
        dml: 0,
        ddl_unknown: 1,
    };
    let err = BlockError {
        code: act::sqlstate::UNPARSED,
        message: format!(
            "ddlgate cannot verify this message: it holds {} statements, DDL among them, and ddlgate analyses at most {} per message",
            prepared.statements, prepared.max_statements
        ),
        detail: "A message ddlgate cannot check completely is refused as a whole; none of its statements ran.".to_owned(),
        hint: "Send the DDL in smaller messages (e.g. one statement per Query), or raise limits.max_statements_per_message.".to_owned(),
    };
    let plan = &mut decided.plan;
    let action = match profile.mode {
        crate::config::Mode::Enforce => {
            plan.sql = Some(err.to_sql());
            plan.blocked.push("unparsed-ddl");
            Action::Block
        }
        crate::config::Mode::Warn => {
            plan.notices.push(act::notice(
                "WARNING",
                &err.message,
                Some(&err.detail),
                Some(&err.hint),
            ));
            Action::Warn
        }
        crate::config::Mode::Observe => Action::Allow,
    };
    plan.audit.push(crate::audit::Draft {
        sql: loggable(sql, ctx.lex, AUDIT_SQL_MAX),
        profile: profile.name.clone(),
        action: action.as_str(),
        intended: Action::Block.as_str(),
        rules: vec!["unparsed-ddl"],
        rewritten: None,
        steps: Vec::new(),
        override_reasons: Vec::new(),
        ddl: None,
        before: None,
    });
}

/// The error a statement fails with when the server stopped its EXPLAIN the way it would have
/// stopped the statement (a cancel, `statement_timeout`, `lock_timeout`): the server's own code
/// and message.
fn stopped_error(code: &'static str, message: &str) -> BlockError {
    BlockError {
        code,
        message: message.to_owned(),
        detail: "The server stopped the statement while ddlgate's backfill guard was reading its row estimate (EXPLAIN, waiting for the statement's lock); the statement did not run.".to_owned(),
        hint: String::new(),
    }
}

/// The backfill guard's decision on one UPDATE/DELETE the planner estimated: above the
/// profile's `backfill.max_rows` it gets `large-backfill`'s finding, decided by the policy like
/// any other (action, mode, override comment); returns the replacement text when blocked.
pub(super) fn decide_backfill(
    profile: &Profile,
    sql: &[u8],
    span: &StatementSpan,
    estimate: &crate::catalog::estimate::Estimate,
    ctx: &Context,
    plan: &mut Plan,
    decisions: &mut Vec<StatementDecision>,
) -> Option<Vec<u8>> {
    let max_rows = profile.backfill.max_rows;
    if !profile.backfill.enabled || estimate.rows <= max_rows {
        return None;
    }
    let finding = rules::large_backfill::finding(
        estimate.op,
        estimate.table.as_deref(),
        estimate.rows,
        max_rows,
    );
    // Over the threshold (rare): the statement's tokens, for its override comments.
    let tokens = lexer::tokens(sql, span.start, span.end, ctx.lex);
    let decision = profile.decide_tokens(sql, &tokens, vec![finding]);
    let replacement = match decision.effective {
        Action::Allow => None,
        Action::Warn | Action::Rewrite => {
            plan.notices.extend(warnings(&decision, profile));
            None
        }
        Action::Block => {
            plan.blocked.extend(stopping_rules(&decision));
            let mut err = block_error(&decision, profile, ctx.tool);
            if decision.error.is_none() {
                // Most migration tools print only the message: the numbers go there too.
                err.message = format!(
                    "{}: estimated {} rows, threshold {max_rows}",
                    err.message, estimate.rows
                );
            }
            Some(err.to_sql())
        }
    };
    plan.audit.push(crate::audit::Draft {
        sql: loggable_tokens(sql, &tokens, span.start, span.end, AUDIT_SQL_MAX),
        profile: profile.name.clone(),
        action: decision.effective.as_str(),
        intended: decision.intended.as_str(),
        rules: decision.verdicts.iter().map(|v| v.finding.rule).collect(),
        rewritten: None,
        steps: Vec::new(),
        override_reasons: decision
            .verdicts
            .iter()
            .filter_map(|v| v.overridden.clone())
            .collect(),
        // Not DDL: nothing to undo.
        ddl: None,
        before: None,
    });
    decisions.push(StatementDecision {
        span: *span,
        decision,
        kind: match estimate.op {
            crate::catalog::estimate::Modification::Update => "update",
            crate::catalog::estimate::Modification::Delete => "delete",
            crate::catalog::estimate::Modification::Merge => "merge",
        },
        refused: None,
    });
    replacement
}

/// One DDL candidate with what its decision rests on.
pub(super) struct DdlInput<'a> {
    span: &'a StatementSpan,
    /// Its tokens, from the split.
    tokens: &'a [Token],
    ddl: &'a Ddl,
    facts: Option<&'a crate::catalog::Facts>,
    created: &'a HashSet<Name>,
    /// The transaction status where it runs.
    tx: TxStatus,
    /// Statements of its message.
    statements: usize,
    /// Constraints added NOT VALID earlier in the message, in the same transaction.
    added: &'a [rules::AddedNotValid],
    /// The message is exactly `ADD c … NOT VALID; <this>` as a lone Query outside a transaction
    /// block: the first statement's span and model, for the two-step recipe.
    pair_with: Option<(&'a StatementSpan, &'a Ddl)>,
    /// The text after it that the rules may search ([`rules::Context::later`], bounded).
    later: &'a [u8],
}

/// Checks and decides one DDL candidate; returns its replacement text when it is rewritten or
/// blocked, and adds any notices, audit record and guard work to the plan.
#[allow(clippy::too_many_arguments)]
pub(super) fn decide_statement(
    profile: &Profile,
    sql: &[u8],
    input: &DdlInput<'_>,
    ctx: &Context,
    tally: &mut Tally,
    summary: &mut Summary,
    plan: &mut Plan,
    decisions: &mut Vec<StatementDecision>,
) -> Option<Vec<u8>> {
    let DdlInput {
        span,
        tokens,
        ddl,
        facts,
        created,
        tx,
        statements,
        added,
        pair_with,
        later,
    } = *input;
    tally.ddl_understood[understood_index(ddl.understood)] += 1;
    if ddl.understood == Understood::Unknown {
        summary.ddl_unknown += 1;
    }
    // Column facts are read before the statement: in an ALTER TABLE whose actions change what
    // they describe for one another (a dropped CHECK that made SET NOT NULL instant, a column
    // changed twice), they no longer hold for the later actions, so none are used.
    let fresh_columns = super::split::stale_columns(ddl)
        .then(|| facts.map(super::split::without_columns))
        .flatten();
    let facts = fresh_columns.as_ref().or(facts);
    let rctx = rules::Context {
        tx,
        shares_unit: statements > 1 || ctx.pipelined,
        in_function_body: false,
        server_version: ctx.server_version,
        created_in_tx: created,
        catalog: facts,
        later,
        added_not_valid: added,
    };
    let decision = policy::evaluate_tokens(profile, sql, tokens, ddl, &rctx);
    if matches!(ddl.kind, DdlKind::DropCascade { .. }) && facts.is_some_and(|f| !f.drops.is_empty())
    {
        plan.fresh_facts_only = true;
    }

    let mut rewritten = None;
    let mut refused = None;
    let replacement = match decision.effective {
        Action::Allow => None,
        Action::Warn => {
            plan.notices.extend(warnings(&decision, profile));
            None
        }
        Action::Block => {
            plan.blocked.extend(stopping_rules(&decision));
            let mut err = block_error(&decision, profile, ctx.tool);
            // A multi-action ALTER TABLE: name each action that stops it.
            if super::split::is_multi_action(ddl) {
                let whole = super::split::Whole {
                    sql,
                    from: span.first.map_or(span.start, |t| t.start),
                    end: span.end,
                    lex: ctx.lex,
                    ddl,
                    profile,
                    decision: &decision,
                    rctx: &rctx,
                };
                if let Ok(super::split::Outcome::Unsafe { unsafe_, total }) =
                    super::split::decide_actions(&whole, None)
                    && !unsafe_.is_empty()
                {
                    err.message =
                        format!("{}; {}", err.message, super::split::named(&unsafe_, total));
                    err.detail = format!("{}\n{}", err.detail, super::split::reasons(&unsafe_));
                }
            }
            Some(err.to_sql())
        }
        Action::Rewrite => match pair_with
            .filter(|_| decision.rewrite == Some(rules::Rewrite::Steps))
            .map(|(first, first_ddl)| {
                validate_apart(
                    sql,
                    first,
                    first_ddl,
                    span,
                    ddl,
                    ctx.lex,
                    ctx.server_version,
                )
            })
            .unwrap_or_else(|| {
                realize(
                    decision.rewrite,
                    sql,
                    tokens,
                    span,
                    ddl,
                    facts,
                    &rctx,
                    ctx.lex,
                    ctx.server_version,
                    statements == 1 && !ctx.pipelined,
                    (profile, &decision),
                )
            }) {
            Realized::Text(new, again) => {
                plan.notices.push(rewrite_notice(&decision, profile, &new));
                rewritten = Some(again);
                Some(new)
            }
            Realized::Steps(recipe) => {
                plan.notices.push(rewrite_notice(
                    &decision,
                    profile,
                    recipe.describe().as_bytes(),
                ));
                plan.notices.extend(warnings_beside_steps(&decision));
                plan.recipe = Some(recipe);
                None
            }
            Realized::Split { recipe, warnings } => {
                plan.notices.push(rewrite_notice(
                    &decision,
                    profile,
                    recipe.describe().as_bytes(),
                ));
                plan.notices.extend(warnings);
                plan.recipe = Some(recipe);
                None
            }
            Realized::Refused(why) => {
                tally.rewrite_failures += 1;
                plan.blocked.extend(stopping_rules(&decision));
                let mut err = block_error(&decision, profile, ctx.tool);
                err.detail = format!("{} {why}", err.detail);
                refused = Some(why);
                Some(err.to_sql())
            }
            Realized::Unsplit { named, why } => {
                tally.rewrite_failures += 1;
                plan.blocked.extend(stopping_rules(&decision));
                let mut err = block_error(&decision, profile, ctx.tool);
                err.message = format!("{}; {named}", err.message);
                err.detail = format!("{}\n{why}", err.detail);
                err.hint = format!(
                    "{} To let ddlgate split the rest into safe steps, send the actions named in the message as ALTER TABLE statements of their own (each then gets its own verdict).",
                    err.hint
                );
                refused = Some(format!("{named}. {why}"));
                Some(err.to_sql())
            }
        },
    };
    // The audit log's record of the decision (its outcome is added by the session).
    plan.audit.push(crate::audit::Draft {
        // A statement too long to hold its tokens (`lexer::MAX_KEPT_TOKENS`) is read again as
        // a stream: its password literals are masked all the same.
        sql: if tokens.is_empty() {
            loggable(
                sql.get(span.start..span.end).unwrap_or_default(),
                ctx.lex,
                AUDIT_SQL_MAX,
            )
        } else {
            loggable_tokens(sql, tokens, span.start, span.end, AUDIT_SQL_MAX)
        },
        profile: profile.name.clone(),
        action: decision.effective.as_str(),
        intended: decision.intended.as_str(),
        rules: decision.verdicts.iter().map(|v| v.finding.rule).collect(),
        rewritten: match (&replacement, decision.effective) {
            (Some(new), Action::Rewrite) => Some(String::from_utf8_lossy(new).into_owned()),
            _ => None,
        },
        steps: plan
            .recipe
            .as_ref()
            .filter(|_| decision.rewrite == Some(rules::Rewrite::Steps))
            .map(|r| r.steps.iter().map(|s| s.sql.clone()).collect())
            .unwrap_or_default(),
        override_reasons: decision
            .verdicts
            .iter()
            .filter_map(|v| v.overridden.clone())
            .collect(),
        ddl: (decision.effective != Action::Block)
            .then(|| Box::new((ddl.clone(), rewritten.as_ref().unwrap_or(ddl).clone()))),
        before: None,
    });
    // What the statement that will run locks: the guard runs around it.
    // Observe mode changes nothing a client can see, the guard included.
    if decision.effective != Action::Block && profile.mode != crate::config::Mode::Observe {
        // A rewrite's text was parsed once, when it was checked: that is what runs.
        let ran = rewritten.as_ref().unwrap_or(ddl);
        let mut guard = plan.guard.take().unwrap_or_default();
        guard.add(ran, |t| rctx.is_new(t));
        plan.guard = (!guard.is_empty()).then_some(guard);
    }
    decisions.push(StatementDecision {
        span: *span,
        decision,
        kind: ddl.kind.label(),
        refused,
    });
    replacement
}

/// What a rewrite verdict becomes.
#[derive(Debug)]
pub enum Realized {
    /// The statement's new text (CONCURRENTLY inserted, …), parsed and checked again, with
    /// what that parse understood.
    Text(Vec<u8>, crate::sql::statement::Ddl),
    /// The safe steps that run instead of the statement.
    Steps(crate::recipe::Recipe),
    /// A multi-action `ALTER TABLE` as one statement (or recipe) per action, with the warnings
    /// its actions get on their own.
    Split {
        recipe: crate::recipe::Recipe,
        warnings: Vec<bytes::BytesMut>,
    },
    /// Neither could be built: the statement is blocked, and this sentence says why.
    Refused(String),
    /// A multi-action `ALTER TABLE` with actions that cannot run on their own safely: `named`
    /// lists them for the error's message, `why` gives each one's reason for its DETAIL.
    Unsplit { named: String, why: String },
}

/// Turns a rewrite verdict into the text or the steps that run instead, or into the reason it
/// cannot be done. The proxy and `ddlgate check` both call it, so they decide alike.
/// `alone`: the statement is the only one of a simple Query (multi-step rewrites need that).
#[allow(clippy::too_many_arguments)]
pub fn realize(
    rewrite: Option<rules::Rewrite>,
    sql: &[u8],
    tokens: &[Token],
    span: &StatementSpan,
    ddl: &crate::sql::statement::Ddl,
    facts: Option<&crate::catalog::Facts>,
    rctx: &rules::Context,
    lex: LexOptions,
    server_version: Option<u32>,
    alone: bool,
    (profile, decision): (&Profile, &crate::policy::Decision),
) -> Realized {
    if rewrite == Some(rules::Rewrite::Steps) && super::split::is_multi_action(ddl) {
        let whole = super::split::Whole {
            sql,
            from: span.first.map_or(span.start, |t| t.start),
            end: span.end,
            lex,
            ddl,
            profile,
            decision,
            rctx,
        };
        return split_steps(&whole, facts, server_version, alone);
    }
    if rewrite == Some(rules::Rewrite::Steps) {
        return match steps(sql, span, ddl, facts, lex, server_version, alone) {
            Ok(recipe) => Realized::Steps(recipe),
            Err(why) => {
                Realized::Refused(format!("ddlgate could not run it as safe steps: {why}."))
            }
        };
    }
    // From the first token: leading comments stay where they are (see `splice`).
    let from = span.first.map_or(span.start, |t| t.start);
    match rewrite
        .ok_or(rewrite::RewriteError::NoInsertionPoint)
        .and_then(|r| rewrite::apply_tokens(sql, tokens, from, span.end, lex, ddl, r, rctx))
    {
        Ok((new, again)) => Realized::Text(new, again),
        Err(e) => Realized::Refused(format!("ddlgate could not rewrite it safely: {e}.")),
    }
}

/// A multi-action `ALTER TABLE` the policy decided to run as steps: every action on its own,
/// each as written or through its recipe, or the actions that keep it blocked.
fn split_steps(
    whole: &super::split::Whole<'_>,
    facts: Option<&crate::catalog::Facts>,
    server_version: Option<u32>,
    alone: bool,
) -> Realized {
    let refused = |why: String| {
        Realized::Refused(format!(
            "ddlgate could not run it as one statement per action: {why}."
        ))
    };
    if !alone {
        return refused("it does not run alone".to_owned());
    }
    let Some(version) = server_version else {
        return refused("the server version is unknown".to_owned());
    };
    let tree = match facts
        .and_then(|f| f.relation.as_ref())
        .filter(|r| r.is_partitioned())
        .map(|r| partition_tree(r.name.as_ref().unwrap_or(&r.asked), &r.partitions, 0))
        .transpose()
    {
        Ok(tree) => tree,
        Err(why) => return refused(why),
    };
    let rctx = crate::recipe::Context {
        server_version_num: version,
        partitions: tree.as_deref(),
        partition_of: None,
    };
    if version < crate::recipe::MIN_SERVER_VERSION {
        return refused(format!(
            "multi-step recipes need PostgreSQL {} or later",
            crate::recipe::MIN_SERVER_VERSION / 10_000
        ));
    }
    match super::split::decide_actions(whole, Some(&rctx)) {
        Ok(super::split::Outcome::Steps(recipe, warnings)) => Realized::Split { recipe, warnings },
        Ok(super::split::Outcome::Unsafe { unsafe_, total }) => Realized::Unsplit {
            named: super::split::named(&unsafe_, total),
            why: super::split::reasons(&unsafe_),
        },
        Err(why) => refused(why),
    }
}

/// `ADD c … NOT VALID; VALIDATE c` sent as one lone Query: the two statements as two steps,
/// each committed on its own (`validate-in-same-transaction`).
pub(super) fn validate_apart(
    sql: &[u8],
    first: &StatementSpan,
    first_ddl: &Ddl,
    second: &StatementSpan,
    second_ddl: &Ddl,
    lex: LexOptions,
    server_version: Option<u32>,
) -> Realized {
    let Some(version) = server_version else {
        return Realized::Refused(
            "ddlgate could not run it as safe steps: the server version is unknown.".to_owned(),
        );
    };
    let at = |s: &StatementSpan| (s.first.map_or(s.start, |t| t.start), s.end);
    match crate::recipe::plan_validate_apart(
        sql,
        lex,
        (at(first), first_ddl),
        (at(second), second_ddl),
        version,
    ) {
        Ok(recipe) => Realized::Steps(recipe),
        Err(why) => Realized::Refused(format!("ddlgate could not run it as safe steps: {why}.")),
    }
}

/// The safe steps for a statement the policy decided to run as a multi-step rewrite: only a
/// statement alone in a simple Query, outside a transaction (the rule offers the rewrite only
/// there), with the partition tree from the catalog when the table is partitioned.
pub(super) fn steps(
    sql: &[u8],
    span: &StatementSpan,
    ddl: &crate::sql::statement::Ddl,
    facts: Option<&crate::catalog::Facts>,
    lex: LexOptions,
    server_version: Option<u32>,
    alone: bool,
) -> Result<crate::recipe::Recipe, String> {
    if !alone {
        return Err("it does not run alone".to_owned());
    }
    let version = server_version.ok_or_else(|| "the server version is unknown".to_owned())?;
    let tree = facts
        .and_then(|f| f.relation.as_ref())
        .filter(|r| r.is_partitioned())
        .map(|r| partition_tree(r.name.as_ref().unwrap_or(&r.asked), &r.partitions, 0))
        .transpose()?;
    let rctx = crate::recipe::Context {
        server_version_num: version,
        partitions: tree.as_deref(),
        partition_of: facts
            .and_then(|f| f.relation.as_ref())
            .filter(|r| r.exists)
            .and_then(|r| r.partition_of.as_ref())
            .map(|p| &p.parent),
    };
    let from = span.first.map_or(span.start, |t| t.start);
    if let DdlKind::CreateIndex {
        name: Some(index),
        table,
        if_not_exists: true,
        ..
    } = &ddl.kind
        && let Some(schema) = facts.and_then(|f| f.invalid_index_leftover(table, &index.name))
    {
        return crate::recipe::plan_rebuild_invalid_index(
            sql, from, span.end, lex, ddl, schema, &rctx,
        )
        .map_err(|e| e.to_string());
    }
    if let DdlKind::AlterTable {
        name: table, ops, ..
    } = &ddl.kind
        && let [
            crate::sql::statement::AlterOp::AddConstraint(crate::sql::statement::AddConstraint {
                kind: crate::sql::statement::ConstraintKind::PrimaryKey { using_index: true },
                index: Some(index),
                ..
            }),
        ] = ops.as_slice()
        && let Some(nullable) = facts.and_then(|f| f.nullable_key_columns(table, index))
        && !nullable.is_empty()
    {
        return crate::recipe::plan_primary_key_using_index(
            sql, from, span.end, lex, ddl, &nullable, &rctx,
        )
        .map_err(|e| e.to_string());
    }
    let resolved = resolved_drop_index(ddl, facts)?;
    let ddl = resolved.as_ref().unwrap_or(ddl);
    crate::recipe::plan(sql, from, span.end, lex, ddl, &rctx).map_err(|e| e.to_string())
}

/// A `DROP INDEX a, b, …` with each name replaced by the schema-qualified name the server
/// resolved it to (the catalog facts: the first index as the relation, the others as
/// referenced relations), so that every step drops, and every precheck asks about, the index
/// the client's statement meant. A name the facts do not resolve stays as written (its step
/// then resolves it like the statement would have). `Ok(None)` for any other statement; `Err`
/// when a name resolves to a relation that is not an index: the statement would fail before
/// dropping anything, the steps only after dropping the indexes before it.
pub(super) fn resolved_drop_index(
    ddl: &crate::sql::statement::Ddl,
    facts: Option<&crate::catalog::Facts>,
) -> Result<Option<crate::sql::statement::Ddl>, String> {
    let DdlKind::DropIndex {
        names,
        concurrently,
        if_exists,
        cascade,
    } = &ddl.kind
    else {
        return Ok(None);
    };
    let names = names
        .iter()
        .map(|n| {
            let found = facts
                .and_then(|f| f.relation_for(n).or_else(|| f.referenced(n)))
                .filter(|r| r.exists);
            if let Some(kind) = found.and_then(|r| r.kind)
                && !matches!(
                    kind,
                    crate::catalog::RelKind::Index | crate::catalog::RelKind::PartitionedIndex
                )
            {
                return Err(format!(
                    "{n} is not an index, so the statement would fail without dropping anything"
                ));
            }
            Ok(found
                .and_then(|r| r.name.clone())
                .unwrap_or_else(|| n.clone()))
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(Some(Ddl {
        kind: DdlKind::DropIndex {
            names,
            concurrently: *concurrently,
            if_exists: *if_exists,
            cascade: *cascade,
        },
        understood: ddl.understood,
    }))
}

/// The catalog's flat partition list (parents before children) as the recipe's tree.
pub(super) fn partition_tree(
    parent: &Name,
    all: &[crate::catalog::Partition],
    depth: usize,
) -> Result<Vec<crate::recipe::Partition>, String> {
    // The catalog's list is the server's, but the tree is built (and later walked by the
    // recipe) recursively: bound its depth so no catalog answer can exhaust the stack.
    if depth > MAX_PARTITION_DEPTH {
        return Err(format!(
            "its partition tree is more than {MAX_PARTITION_DEPTH} levels deep"
        ));
    }
    all.iter()
        .filter(|p| &p.parent == parent)
        .map(|p| {
            Ok(if p.is_leaf() {
                crate::recipe::Partition::leaf(p.name.clone())
            } else {
                crate::recipe::Partition::partitioned(
                    p.name.clone(),
                    partition_tree(&p.name, all, depth + 1)?,
                )
            })
        })
        .collect()
}

/// Deepest partition tree a multi-step rewrite is planned for; deeper ones are refused (the
/// statement is blocked with the reason). Real hierarchies have a handful of levels.
pub(super) const MAX_PARTITION_DEPTH: usize = 32;

/// Longest SQL text an audit record holds.
pub(super) const AUDIT_SQL_MAX: usize = 64 * 1024;

/// How a guarded message can be retried after a lock timeout (see [`Retry`]).
pub(super) fn retry_mode(
    start: TxStatus,
    source: Source,
    tx_control: &[(usize, TxStatus, TxStatus)],
    statements: usize,
) -> Retry {
    if source != Source::Query {
        return Retry::No;
    }
    match start {
        TxStatus::InTransaction if tx_control.is_empty() => Retry::Savepoint,
        TxStatus::Idle if tx_control.is_empty() => Retry::Whole,
        // `BEGIN; …; COMMIT` as one Query: atomic, and a failure leaves a failed block that
        // a ROLLBACK clears.
        TxStatus::Idle => match tx_control {
            [
                (b, TxStatus::Idle, TxStatus::InTransaction),
                (c, TxStatus::InTransaction, TxStatus::Idle),
            ] if *b == 0 && *c + 1 == statements => Retry::Whole,
            _ => Retry::No,
        },
        _ => Retry::No,
    }
}

/// BEGIN/START open a transaction block; COMMIT/END/ROLLBACK/ABORT close it (ROLLBACK TO
/// SAVEPOINT does not).
pub(super) fn transaction_effect(
    sql: &[u8],
    span: &StatementSpan,
    lex: LexOptions,
    tx: TxStatus,
) -> TxStatus {
    let mut words = lexer::Lexer::at(sql, span.start, lex)
        .take_while(|t| t.start < span.end)
        .filter(|t| !t.is_comment());
    let Some(first) = words.next() else { return tx };
    let second = words.next();
    if first.is_word(sql, "BEGIN") || first.is_word(sql, "START") {
        TxStatus::InTransaction
    } else if first.is_word(sql, "ROLLBACK") && second.is_some_and(|t| t.is_word(sql, "TO")) {
        tx
    } else if ["COMMIT", "END", "ROLLBACK", "ABORT"]
        .iter()
        .any(|k| first.is_word(sql, k))
    {
        // PREPARE TRANSACTION / COMMIT PREPARED are not in this class.
        TxStatus::Idle
    } else {
        tx
    }
}

/// Replaces the given statements' spans in `sql`, keeping every other byte.
pub(super) fn splice(
    sql: &[u8],
    spans: &[StatementSpan],
    replacements: &[(usize, Vec<u8>)],
) -> Vec<u8> {
    let mut out =
        Vec::with_capacity(sql.len() + replacements.iter().map(|(_, r)| r.len()).sum::<usize>());
    let mut at = 0;
    for (i, new) in replacements {
        let span = &spans[*i];
        // Keep comments before the statement's first token (override comments stay visible in
        // the server's logs and pg_stat_activity); replace from the first token to the end.
        let from = span.first.map_or(span.start, |t| t.start);
        out.extend_from_slice(&sql[at..from]);
        out.extend_from_slice(new);
        at = span.end;
    }
    out.extend_from_slice(&sql[at..]);
    out
}

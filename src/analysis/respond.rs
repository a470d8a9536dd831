//! What ddlgate says about a decision: the error that replaces a blocked statement, warnings,
//! the rewrite notice, log lines, and SQL made fit for logs.

use bytes::BytesMut;

use crate::act::{self, BlockError};
use crate::policy::{Decision, Profile};
use crate::rules::{self, Action};
use crate::sql::lexer::{self, LexOptions, StatementSpan, Token, TokenKind};

/// The rules that stop a statement (see [`block_error`]): those that block it, or, when a
/// rewrite or recipe could not be applied, those that asked for it; `invalid-override` for a
/// refused override comment.
pub(super) fn stopping_rules(d: &Decision) -> Vec<&'static str> {
    if d.error.is_some() {
        return vec!["invalid-override"];
    }
    let of = |action| {
        let mut ids: Vec<&'static str> = Vec::new();
        for v in d.verdicts.iter().filter(|v| v.action == action) {
            if !ids.contains(&v.finding.rule) {
                ids.push(v.finding.rule);
            }
        }
        ids
    };
    let blocking = of(Action::Block);
    if blocking.is_empty() {
        of(Action::Rewrite)
    } else {
        blocking
    }
}

/// The error the server raises in place of a blocked statement.
pub(super) fn block_error(
    d: &Decision,
    profile: &Profile,
    tool: Option<crate::tools::Tool>,
) -> BlockError {
    if let Some(e) = &d.error {
        return BlockError {
            code: act::sqlstate::INVALID_OVERRIDE,
            message: format!("ddlgate refused the statement: {e}"),
            detail: format!(
                "Policy profile `{}` checks every ddlgate:allow comment before it takes effect.",
                d.profile
            ),
            hint: OVERRIDE_HINT.to_owned(),
        };
    }
    // The rules that stop the statement: those that block it, or, when a rewrite or recipe
    // could not be applied, those that asked for it. Naming them all is what lets the user
    // write the one override comment that runs the statement as written.
    let mut stopping: Vec<&crate::policy::Verdict> = d
        .verdicts
        .iter()
        .filter(|v| v.action == Action::Block)
        .collect();
    if stopping.is_empty() {
        stopping = d
            .verdicts
            .iter()
            .filter(|v| v.action == Action::Rewrite)
            .collect();
    }
    let Some(v) = stopping.first() else {
        // Every path that blocks has a finding behind it; should one ever not, the user still
        // learns that, and what to do, rather than a bare refusal.
        return BlockError {
            code: act::sqlstate::BLOCKED,
            message: "ddlgate blocked this statement (no rule named it)".to_owned(),
            detail: format!("Policy profile `{}` blocks it.", d.profile),
            hint: "The ddlgate log records the decision; report the statement.".to_owned(),
        };
    };
    let mut ids: Vec<&str> = Vec::with_capacity(stopping.len());
    for s in &stopping {
        if !ids.contains(&s.finding.rule) {
            ids.push(s.finding.rule);
        }
    }
    let names = ids
        .iter()
        .map(|id| match rules::rule(id) {
            Some(r) => format!("{id}: {}", r.summary),
            None => (*id).to_owned(),
        })
        .collect::<Vec<_>>()
        .join("; ");
    let mut hint = v.finding.hint.clone();
    // The way out of the transaction, in the message too: most tools print only the message.
    // Offered exactly where the rule's hint offers it (inside a transaction block or a shared
    // unit), so it is never advice that would not help.
    let mut way_out = String::new();
    if hint.contains(rules::OUTSIDE_TRANSACTION_HINT) {
        match tool {
            Some(tool) => {
                hint = hint.replace(
                    rules::OUTSIDE_TRANSACTION_HINT,
                    &format!(
                        "Run it as its own statement outside any transaction: with {}, {}.",
                        tool.name(),
                        tool.outside_transaction()
                    ),
                );
                // Said once: in the HINT for a tool that shows it, else in the message.
                if !tool.shows_hint() {
                    way_out = format!(
                        ". Safe way with {}: {} (ddlgate then runs its safe form)",
                        tool.name(),
                        tool.outside_transaction()
                    );
                }
            }
            None => {
                way_out = ". Safe way: run it as its own statement outside any transaction (ddlgate then runs its safe form); the HINT names each migration tool's switch".to_owned();
            }
        }
    }
    let forbidden: Vec<&str> = ids
        .iter()
        .copied()
        .filter(|id| !profile.may_override_rule(id))
        .collect();
    if forbidden.is_empty() {
        hint.push_str(&format!(
            " If you are sure it is safe, prefix the statement with {}",
            override_comment(&ids)
        ));
    } else {
        hint.push_str(&format!(
            " Policy profile `{}` does not allow overriding {}.",
            d.profile,
            forbidden.join(", ")
        ));
    }
    let mut detail = v.finding.message.clone();
    for s in stopping.iter().skip(1) {
        if !detail.contains(&s.finding.message) {
            detail.push('\n');
            detail.push_str(&s.finding.message);
        }
    }
    BlockError {
        code: if ids.contains(&"unparsed-ddl") {
            act::sqlstate::UNPARSED
        } else {
            act::sqlstate::BLOCKED
        },
        message: format!(
            "ddlgate blocked this statement ({} {names}){way_out}{}",
            if ids.len() == 1 { "rule" } else { "rules" },
            match tool {
                Some(tool) if !tool.shows_hint() && forbidden.is_empty() =>
                    format!(". To run it as written: {}", override_comment(&ids)),
                _ => String::new(),
            }
        ),
        detail,
        hint,
    }
}

/// The comment that allows `ids` exactly as the policy parses it.
pub(super) fn override_comment(ids: &[&str]) -> String {
    format!("/* ddlgate:allow {} reason=\"…\" */", ids.join(","))
}

pub(super) fn warnings(d: &Decision, profile: &Profile) -> Vec<BytesMut> {
    let mut out = warnings_where(d, |a| a != Action::Allow);
    if let Some(e) = &d.error {
        out.push(act::notice(
            "WARNING",
            &format!("ddlgate ({} profile): {e}", profile.name),
            None,
            Some(OVERRIDE_HINT),
        ));
    }
    out
}

/// The warnings of a statement that runs as safe steps: its other rules' findings whose
/// action is warn (a DROP TABLE of a partition still destroys data), which the steps'
/// notice does not carry.
pub(super) fn warnings_beside_steps(d: &Decision) -> Vec<BytesMut> {
    warnings_where(d, |a| a == Action::Warn)
}

fn warnings_where(d: &Decision, shown: impl Fn(Action) -> bool) -> Vec<BytesMut> {
    d.verdicts
        .iter()
        .filter(|v| shown(v.action))
        .map(|v| {
            let would = if d.intended != Action::Warn && v.action != Action::Warn {
                format!(" (in enforce mode ddlgate would {} it)", v.action.as_str())
            } else {
                String::new()
            };
            act::notice(
                "WARNING",
                &format!(
                    "ddlgate rule {}{would}: {}",
                    v.finding.rule, v.finding.message
                ),
                None,
                Some(&v.finding.hint),
            )
        })
        .collect()
}

pub(super) const OVERRIDE_HINT: &str = "Name existing rule ids and give a reason: /* ddlgate:allow rule-id reason=\"why this is safe\" */";

pub(super) fn rewrite_notice(d: &Decision, profile: &Profile, new: &[u8]) -> BytesMut {
    let rule = d
        .verdicts
        .iter()
        .find(|v| v.action == Action::Rewrite)
        .map_or("", |v| v.finding.rule);
    let reason = d
        .verdicts
        .iter()
        .find(|v| v.action == Action::Rewrite)
        .map_or(String::new(), |v| v.finding.message.clone());
    if d.rewrite == Some(crate::rules::Rewrite::Guarded) {
        // No safe form exists to write (a partitioned index cannot be dropped concurrently):
        // the statement runs plainly, under the guard, and the rule's hint says so.
        let hint = d
            .verdicts
            .iter()
            .find(|v| v.action == Action::Rewrite)
            .map_or(String::new(), |v| v.finding.hint.clone());
        return act::notice(
            "NOTICE",
            &format!(
                "ddlgate runs this statement under the lock guard (rule {rule}): {}",
                String::from_utf8_lossy(new).trim()
            ),
            Some(&reason),
            Some(&hint),
        );
    }
    act::notice(
        "NOTICE",
        &format!(
            "ddlgate rewrote this statement to its safe form (rule {rule}): {}",
            String::from_utf8_lossy(new).trim()
        ),
        Some(&reason),
        Some(&if profile.may_override_rule(rule) {
            format!(
                "Write the safe form yourself and this notice goes away; to run the statement exactly as written, prefix it with /* ddlgate:allow {rule} reason=\"…\" */."
            )
        } else {
            "Write the safe form yourself and this notice goes away.".to_owned()
        }),
    )
}

pub(super) fn log_decision(
    d: &Decision,
    kind: &str,
    sql: &[u8],
    span: &StatementSpan,
    lex: LexOptions,
) {
    let rules: Vec<&str> = d.verdicts.iter().map(|v| v.finding.rule).collect();
    for v in d.verdicts.iter().filter(|v| v.overridden.is_some()) {
        tracing::info!(rule = v.finding.rule, reason = v.overridden.as_deref().unwrap_or(""), profile = %d.profile, "override applied");
    }
    if d.intended == Action::Allow && d.error.is_none() {
        tracing::debug!(?rules, profile = %d.profile, "DDL allowed");
    } else {
        tracing::info!(
            ?rules,
            intended = d.intended.as_str(),
            action = d.effective.as_str(),
            mode = d.mode.as_str(),
            profile = %d.profile,
            error = d.error.as_ref().map(ToString::to_string),
            kind,
            sql = %loggable(sql.get(span.start..span.end).unwrap_or_default(), lex, 200),
            "DDL decision"
        );
    }
}

/// SQL for logs: at most `max` bytes (see [`truncated`]), and with every string literal
/// replaced by `'***'` when the SQL mentions a password (`CREATE ROLE … PASSWORD '…'`,
/// `ALTER USER … PASSWORD`): ddlgate never logs passwords.
pub fn loggable(sql: &[u8], lex: LexOptions, max: usize) -> String {
    // Streamed: a message of any size costs no token buffer here.
    masked(sql, 0, sql.len(), || lexer::Lexer::new(sql, lex), max)
}

/// [`loggable`] for the statement `sql[start..end]` whose tokens the caller has.
pub(super) fn loggable_tokens(
    sql: &[u8],
    tokens: &[Token],
    start: usize,
    end: usize,
    max: usize,
) -> String {
    masked(sql, start, end, || tokens.iter().copied(), max)
}

/// `sql[start..end]` for logs, its string literals masked when its words mention a password.
fn masked<I: Iterator<Item = Token>>(
    sql: &[u8],
    start: usize,
    end: usize,
    tokens: impl Fn() -> I,
    max: usize,
) -> String {
    let text = sql.get(start..end).unwrap_or_default();
    let words = || tokens().filter(|t| !t.is_comment());
    if !words().any(|t| t.is_word(sql, "PASSWORD")) {
        return truncated(text, max);
    }
    let mut out = Vec::with_capacity(text.len().min(max));
    let mut at = start;
    for t in words().filter(|t| matches!(t.kind, TokenKind::String | TokenKind::DollarString)) {
        out.extend_from_slice(sql.get(at..t.start).unwrap_or_default());
        out.extend_from_slice(b"'***'");
        at = t.end;
    }
    out.extend_from_slice(sql.get(at..end).unwrap_or_default());
    truncated(&out, max)
}

/// SQL for logs: at most `max` bytes, lossy UTF-8, marked when cut.
pub fn truncated(sql: &[u8], max: usize) -> String {
    if sql.len() <= max {
        String::from_utf8_lossy(sql).into_owned()
    } else {
        format!(
            "{}… ({} bytes)",
            String::from_utf8_lossy(&sql[..max]),
            sql.len()
        )
    }
}

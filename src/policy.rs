//! The policy: turns a statement's findings into one decision — allow, warn, rewrite or block —
//! for the profile the session belongs to.
//!
//! 1. The session's profile is chosen once, at startup, from its user, database and
//!    `application_name` (first matching `[[profiles]]` entry, else `[policy]`).
//! 2. Each finding gets the profile's action for its rule (config, else the rule's default).
//!    `rewrite` without a rewrite available in this context becomes `block`: the rule's
//!    verdict for where the statement is.
//! 3. Override comments attached to the statement, `/* ddlgate:allow rule-id[,rule-id]
//!    reason="…" */`, allow the rules they name if the profile lets them; naming an unknown
//!    rule, omitting the reason, or overriding what the profile forbids is itself refused.
//! 4. The strongest action wins (block > rewrite > warn > allow); the mode then decides what
//!    the client sees: `enforce` carries it out, `warn` turns blocks and rewrites into notices,
//!    `observe` shows nothing. Every decision is counted per rule and action.

use std::collections::HashMap;

use crate::config::{Config, Mode, Patterns, PolicyConfig, ProfileConfig, Selector};
use crate::rules::{self, Action, Finding, RULES, Rewrite};
use crate::sql::lexer::{LexOptions, Lexer, Token, TokenKind};
use crate::sql::statement::Ddl;

/// The policy for one kind of session.
#[derive(Debug, Clone)]
pub struct Profile {
    /// `default` for `[policy]`, else the profile's name.
    pub name: String,
    pub mode: Mode,
    /// Rules an override comment may allow; `None` means all.
    overridable: Option<Vec<String>>,
    actions: HashMap<String, Action>,
    /// Some opt-in style rule (`rules::STYLE_RULES`) has an action other than allow: only
    /// then are they run at all.
    style: bool,
    /// The backfill guard (`[policy.backfill]`, a profile's fields over it): whether UPDATE and
    /// DELETE are examined at all, and above which estimate. Its action is `large-backfill`'s.
    pub backfill: crate::config::BackfillConfig,
}

/// All profiles, built once from the configuration.
#[derive(Debug, Clone)]
pub struct Policy {
    default: Profile,
    profiles: Vec<(Selector, Profile)>,
}

impl Policy {
    pub fn from_config(config: &Config) -> Policy {
        let base = &config.policy;
        Policy {
            default: Profile::base(base),
            profiles: config
                .profiles
                .iter()
                .map(|p| (p.selector.clone(), Profile::derived(base, p)))
                .collect(),
        }
    }

    /// A profile by name (`default` is `[policy]`).
    pub fn profile_named(&self, name: &str) -> Option<&Profile> {
        if name == "default" {
            return Some(&self.default);
        }
        self.profiles
            .iter()
            .map(|(_, p)| p)
            .find(|p| p.name == name)
    }

    /// The profile for a session.
    pub fn profile_for(&self, user: &str, database: &str, application_name: &str) -> &Profile {
        self.profiles
            .iter()
            .find(|(s, _)| {
                matches(s.user.as_ref(), user)
                    && matches(s.database.as_ref(), database)
                    && matches(s.application_name.as_ref(), application_name)
            })
            .map(|(_, p)| p)
            .unwrap_or(&self.default)
    }
}

fn matches(patterns: Option<&Patterns>, value: &str) -> bool {
    patterns.is_none_or(|p| p.matches(value))
}

impl Profile {
    fn base(cfg: &PolicyConfig) -> Profile {
        Profile {
            name: "default".to_owned(),
            mode: cfg.mode,
            overridable: overridable(&cfg.overridable),
            actions: cfg.rules.iter().map(|(k, v)| (k.clone(), *v)).collect(),
            style: false,
            backfill: cfg.backfill,
        }
        .styled()
        .backfilled()
    }

    fn derived(base: &PolicyConfig, p: &ProfileConfig) -> Profile {
        let mut actions: HashMap<String, Action> =
            base.rules.iter().map(|(k, v)| (k.clone(), *v)).collect();
        actions.extend(p.rules.iter().map(|(k, v)| (k.clone(), *v)));
        Profile {
            name: p.name.clone(),
            mode: p.mode.unwrap_or(base.mode),
            overridable: overridable(p.overridable.as_ref().unwrap_or(&base.overridable)),
            actions,
            style: false,
            backfill: p.backfill.over(&base.backfill),
        }
        .styled()
        .backfilled()
    }

    /// `large-backfill` takes `backfill.action`, unless a rules table names it.
    fn backfilled(mut self) -> Profile {
        self.actions
            .entry(crate::rules::LARGE_BACKFILL.to_owned())
            .or_insert(self.backfill.action.action());
        self
    }

    /// Sets [`Profile::style`] from the configured actions.
    fn styled(mut self) -> Profile {
        self.style = self
            .actions
            .iter()
            .any(|(id, a)| *a != Action::Allow && rules::is_style(id));
        self
    }

    /// This profile with every opt-in style rule it leaves at its default turned to warn
    /// (`ddlgate check --style`). A style rule the configuration sets keeps its action.
    pub fn with_style(mut self) -> Profile {
        for r in rules::STYLE_RULES {
            self.actions.entry(r.id.to_owned()).or_insert(Action::Warn);
        }
        self.styled()
    }

    /// Whether the opt-in style rules run for this profile.
    pub fn style(&self) -> bool {
        self.style
    }

    /// The action this profile takes on a rule's findings.
    pub fn action_for(&self, rule_id: &str) -> Action {
        self.actions
            .get(rule_id)
            .copied()
            .or_else(|| rules::rule(rule_id).map(|r| r.default_action))
            .unwrap_or(Action::Block)
    }

    /// Whether an override comment may allow `rule_id` in this profile.
    pub fn may_override_rule(&self, rule_id: &str) -> bool {
        self.overridable
            .as_ref()
            .is_none_or(|ids| ids.iter().any(|id| id == rule_id))
    }

    /// Decides what to do with one statement given its findings. `sql[start..end]` is the
    /// statement's text, searched for override comments.
    pub fn decide(
        &self,
        sql: &[u8],
        start: usize,
        end: usize,
        lex: LexOptions,
        findings: Vec<Finding>,
    ) -> Decision {
        let tokens = crate::sql::lexer::tokens(sql, start, end, lex);
        self.decide_tokens(sql, &tokens, findings)
    }

    /// [`Profile::decide`] over the statement's tokens (comments included), lexed once by the
    /// caller.
    pub fn decide_tokens(&self, sql: &[u8], tokens: &[Token], findings: Vec<Finding>) -> Decision {
        let overrides = match parse_overrides_in(sql, tokens.iter().copied()) {
            Ok(o) => o,
            Err(e) => return Decision::refused(self, DecisionError::Override(e)),
        };
        for o in &overrides {
            if let Some(id) = o.rules.iter().find(|id| !self.may_override_rule(id)) {
                return Decision::refused(
                    self,
                    DecisionError::OverrideForbidden {
                        rule: id.clone(),
                        profile: self.name.clone(),
                    },
                );
            }
        }
        self.decide_with(overrides, findings)
    }

    /// [`Profile::decide_tokens`] with the statement's override comments already read and
    /// accepted: a part of a statement (one action of a multi-action ALTER TABLE, decided on
    /// its own) is decided under the comments of the whole.
    pub fn decide_with(&self, overrides: Vec<Override>, findings: Vec<Finding>) -> Decision {
        let mut verdicts = Vec::with_capacity(findings.len());
        for finding in findings {
            let configured = self.action_for(finding.rule);
            let mut action = match configured {
                Action::Rewrite if finding.rewrite.is_none() => Action::Block,
                other => other,
            };
            let overridden = overrides
                .iter()
                .find(|o| o.rules.iter().any(|id| id == finding.rule))
                .map(|o| o.reason.clone());
            if overridden.is_some() {
                action = Action::Allow;
            }
            verdicts.push(Verdict {
                finding,
                action,
                overridden,
            });
        }
        let intended = verdicts
            .iter()
            .map(|v| v.action)
            .max()
            .unwrap_or(Action::Allow);
        let effective = match (self.mode, intended) {
            (Mode::Enforce, a) => a,
            (Mode::Warn, Action::Allow) => Action::Allow,
            (Mode::Warn, _) => Action::Warn,
            (Mode::Observe, _) => Action::Allow,
        };
        let rewrite = (effective == Action::Rewrite)
            .then(|| {
                verdicts
                    .iter()
                    .find(|v| v.action == Action::Rewrite)
                    .and_then(|v| v.finding.rewrite)
            })
            .flatten();
        Decision {
            profile: self.name.clone(),
            mode: self.mode,
            intended,
            effective,
            rewrite,
            verdicts,
            overrides,
            error: None,
        }
    }
}

fn overridable(ids: &[String]) -> Option<Vec<String>> {
    if ids.iter().any(|id| id == "*") {
        None
    } else {
        Some(ids.to_vec())
    }
}

/// What the policy decided for one statement.
#[derive(Debug, Clone)]
pub struct Decision {
    pub profile: String,
    pub mode: Mode,
    /// What enforce mode would do.
    pub intended: Action,
    /// What actually happens in this mode.
    pub effective: Action,
    /// The rewrite to apply when `effective` is `Rewrite`.
    pub rewrite: Option<Rewrite>,
    pub verdicts: Vec<Verdict>,
    pub overrides: Vec<Override>,
    /// The statement is refused because its override comment is invalid.
    pub error: Option<DecisionError>,
}

impl Decision {
    fn refused(profile: &Profile, error: DecisionError) -> Decision {
        let effective = if profile.mode == Mode::Enforce {
            Action::Block
        } else {
            Action::Warn
        };
        Decision {
            profile: profile.name.clone(),
            mode: profile.mode,
            intended: Action::Block,
            effective: if profile.mode == Mode::Observe {
                Action::Allow
            } else {
                effective
            },
            rewrite: None,
            verdicts: Vec::new(),
            overrides: Vec::new(),
            error: Some(error),
        }
    }

    /// The finding that decided a block (the first blocking one).
    pub fn blocking(&self) -> Option<&Verdict> {
        self.verdicts.iter().find(|v| v.action == Action::Block)
    }
}

/// One finding with the action the profile gives it.
#[derive(Debug, Clone)]
pub struct Verdict {
    pub finding: Finding,
    pub action: Action,
    /// The reason given by the override comment that allowed it.
    pub overridden: Option<String>,
}

/// A parsed `/* ddlgate:allow … */` comment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Override {
    pub rules: Vec<String>,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OverrideError {
    #[error(
        "ddlgate:allow must name the rules it allows, e.g. /* ddlgate:allow ban-drop-column reason=\"…\" */"
    )]
    NoRules,
    #[error("ddlgate:allow names unknown rule `{0}`")]
    UnknownRule(String),
    #[error("ddlgate:allow needs a reason=\"…\" saying why the statement is safe")]
    NoReason,
    #[error("ddlgate:allow comment is malformed: {0}")]
    Malformed(String),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecisionError {
    #[error("{0}")]
    Override(OverrideError),
    #[error("profile `{profile}` does not allow overriding `{rule}`")]
    OverrideForbidden { rule: String, profile: String },
}

/// Finds `ddlgate:allow` comments in a statement (any `--` or `/* */` comment inside its span,
/// including the ones before its first keyword).
pub fn parse_overrides(
    sql: &[u8],
    start: usize,
    end: usize,
    lex: LexOptions,
) -> Result<Vec<Override>, OverrideError> {
    parse_overrides_in(
        sql,
        Lexer::at(sql, start, lex).take_while(|t| t.start < end),
    )
}

/// [`parse_overrides`] over a statement's tokens.
fn parse_overrides_in(
    sql: &[u8],
    tokens: impl IntoIterator<Item = Token>,
) -> Result<Vec<Override>, OverrideError> {
    let mut out = Vec::new();
    for token in tokens {
        let body = match token.kind {
            TokenKind::BlockComment => token
                .text(sql)
                .get(2..token.text(sql).len().saturating_sub(2))
                .unwrap_or_default(),
            TokenKind::LineComment => token.text(sql).get(2..).unwrap_or_default(),
            _ => continue,
        };
        let text = String::from_utf8_lossy(body);
        let text = text.trim();
        if let Some(rest) = text.strip_prefix("ddlgate:allow") {
            out.push(parse_override(rest)?);
        }
    }
    Ok(out)
}

fn parse_override(rest: &str) -> Result<Override, OverrideError> {
    let rest = rest.trim_start();
    let (ids, after) = match rest.find("reason") {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let rules: Vec<String> = ids
        .split([',', ' ', '\t', '\n'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    if rules.is_empty() {
        return Err(OverrideError::NoRules);
    }
    if let Some(bad) = rules.iter().find(|id| rules::rule(id).is_none()) {
        return Err(OverrideError::UnknownRule(bad.clone()));
    }
    let after = after
        .strip_prefix("reason")
        .ok_or(OverrideError::NoReason)?
        .trim_start();
    let after = after
        .strip_prefix('=')
        .ok_or_else(|| OverrideError::Malformed("expected reason=\"…\"".to_owned()))?
        .trim_start();
    let quoted = after.strip_prefix('"').ok_or_else(|| {
        OverrideError::Malformed("the reason must be in double quotes".to_owned())
    })?;
    let close = quoted
        .find('"')
        .ok_or_else(|| OverrideError::Malformed("unterminated reason".to_owned()))?;
    let reason = quoted[..close].trim().to_owned();
    if reason.is_empty() {
        return Err(OverrideError::NoReason);
    }
    Ok(Override { rules, reason })
}

/// The effective policy of a configuration, for `ddlgate config check`: mode, overridable
/// rules and every rule's action, for `[policy]` and each profile.
pub fn describe_effective(config: &Config) -> String {
    use std::fmt::Write;
    let policy = Policy::from_config(config);
    let mut out = String::new();
    let mut profiles = vec![(None, &policy.default)];
    profiles.extend(policy.profiles.iter().map(|(s, p)| (Some(s), p)));
    for (selector, p) in profiles {
        let _ = writeln!(out, "profile {}", p.name);
        if let Some(s) = selector {
            let _ = writeln!(out, "  match: {}", describe_selector(s));
        }
        let _ = writeln!(out, "  mode: {}", p.mode.as_str());
        let _ = writeln!(
            out,
            "  overridable: {}",
            p.overridable
                .as_ref()
                .map_or("every rule".to_owned(), |ids| if ids.is_empty() {
                    "none".to_owned()
                } else {
                    ids.join(", ")
                })
        );
        for rule in RULES {
            let action = p.action_for(rule.id);
            let note = if action == rule.default_action {
                ""
            } else {
                "  (changed)"
            };
            let _ = writeln!(out, "  {:<48} {}{note}", rule.id, action.as_str());
        }
        let b = &p.backfill;
        let _ = writeln!(
            out,
            "  backfill: {}",
            if b.enabled {
                format!(
                    "on (UPDATE/DELETE/MERGE estimated above {} rows: {})",
                    b.max_rows,
                    p.action_for(crate::rules::LARGE_BACKFILL).as_str()
                )
            } else {
                "off".to_owned()
            }
        );
    }
    let g = &config.guard;
    let _ = writeln!(
        out,
        "guard: {} (lock_timeout {} ms, {} attempts / {} ms, serialize per table: {})",
        if g.enabled { "on" } else { "off" },
        g.lock_timeout_ms.as_millis(),
        g.max_attempts,
        g.max_wait_ms.as_millis(),
        g.serialize
    );
    let _ = writeln!(
        out,
        "catalog: {}",
        if config.catalog.enabled { "on" } else { "off" }
    );
    out
}

fn describe_selector(s: &Selector) -> String {
    let mut parts = Vec::new();
    for (name, p) in [
        ("user", &s.user),
        ("database", &s.database),
        ("application_name", &s.application_name),
    ] {
        if let Some(p) = p {
            parts.push(format!("{name} in [{}]", p.0.join(", ")));
        }
    }
    parts.join(" and ")
}

/// Runs the rules over one understood statement and decides: the whole engine in one call, as
/// used by the proxy and by `ddlgate check`.
pub fn evaluate(
    profile: &Profile,
    sql: &[u8],
    start: usize,
    end: usize,
    lex: LexOptions,
    ddl: &Ddl,
    ctx: &rules::Context,
) -> Decision {
    let findings = rules::check(ddl, ctx);
    profile.decide(sql, start, end, lex, findings)
}

/// [`evaluate`] over the statement's tokens (every token of it, comments included), lexed once
/// by the caller: the proxy's path.
pub fn evaluate_tokens(
    profile: &Profile,
    sql: &[u8],
    tokens: &[Token],
    ddl: &Ddl,
    ctx: &rules::Context,
) -> Decision {
    let mut findings = rules::check(ddl, ctx);
    if profile.style {
        findings.extend(rules::check_style(ddl, ctx, |id| {
            profile.action_for(id) != Action::Allow
        }));
    }
    profile.decide_tokens(sql, tokens, findings)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::testing::{Ctx, understand};

    fn decide(policy: &Policy, profile: (&str, &str, &str), sql: &str, ctx: &Ctx) -> Decision {
        let p = policy.profile_for(profile.0, profile.1, profile.2);
        evaluate(
            p,
            sql.as_bytes(),
            0,
            sql.len(),
            LexOptions::default(),
            &understand(sql),
            &ctx.get(),
        )
    }

    fn policy(toml: &str) -> Policy {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("p.toml");
        std::fs::write(&path, toml).expect("write");
        let cfg = Config::load_with_env(Some(&path), &Default::default(), Vec::new())
            .expect("valid config");
        Policy::from_config(&cfg)
    }

    const ANY: (&str, &str, &str) = ("app", "app", "rails");

    #[test]
    fn default_policy_needs_no_config() {
        let p = Policy::from_config(&Config::default());
        let d = decide(&p, ANY, "CREATE INDEX i ON t (x)", &Ctx::default());
        assert_eq!(
            (d.intended, d.effective, d.rewrite),
            (
                Action::Rewrite,
                Action::Rewrite,
                Some(Rewrite::Concurrently)
            )
        );
        // The same statement inside a transaction cannot be rewritten: the verdict is block.
        let d = decide(&p, ANY, "CREATE INDEX i ON t (x)", &Ctx::in_tx());
        assert_eq!(d.effective, Action::Block);
        assert_eq!(
            d.blocking().map(|v| v.finding.rule),
            Some("require-concurrent-index-creation")
        );
        // Nothing to say about safe statements.
        let d = decide(
            &p,
            ANY,
            "CREATE INDEX CONCURRENTLY i ON t (x)",
            &Ctx::default(),
        );
        assert_eq!((d.effective, d.verdicts.len()), (Action::Allow, 0));
        // Unparsed DDL fails closed.
        assert_eq!(
            decide(&p, ANY, "FROBNICATE t", &Ctx::default()).effective,
            Action::Block
        );
    }

    #[test]
    fn modes_change_what_is_visible() {
        let p = policy("[policy]\nmode = \"warn\"\n");
        let d = decide(&p, ANY, "CREATE INDEX i ON t (x)", &Ctx::in_tx());
        assert_eq!((d.intended, d.effective), (Action::Block, Action::Warn));
        let p = policy("[policy]\nmode = \"observe\"\n");
        let d = decide(&p, ANY, "CREATE INDEX i ON t (x)", &Ctx::in_tx());
        assert_eq!((d.intended, d.effective), (Action::Block, Action::Allow));
    }

    #[test]
    fn profiles_select_by_session_and_layer_on_the_base() {
        let p = policy(
            r#"
[policy.rules]
"require-concurrent-index-deletion" = "block"

[[profiles]]
name = "humans"
match = { application_name = "psql" }
overridable = []
[profiles.rules]
"require-concurrent-index-creation" = "block"

[[profiles]]
name = "migrations"
match = { user = "migrat*" }
mode = "warn"
"#,
        );
        assert_eq!(p.profile_for("bob", "app", "psql").name, "humans");
        assert_eq!(p.profile_for("migrator", "app", "rails").name, "migrations");
        assert_eq!(p.profile_for("app", "app", "rails").name, "default");
        // humans: no rewrite for them, a block; the base's rule setting still applies.
        let d = decide(
            &p,
            ("bob", "app", "psql"),
            "CREATE INDEX i ON t (x)",
            &Ctx::default(),
        );
        assert_eq!(d.effective, Action::Block);
        let d = decide(&p, ("bob", "app", "psql"), "DROP INDEX i", &Ctx::default());
        assert_eq!(d.effective, Action::Block);
        let d = decide(&p, ("app", "app", "x"), "DROP INDEX i", &Ctx::default());
        assert_eq!(
            d.effective,
            Action::Block,
            "base rule setting: block instead of rewrite"
        );
        // humans may not override at all.
        let sql = "/* ddlgate:allow require-concurrent-index-creation reason=\"tiny table\" */ CREATE INDEX i ON t (x)";
        let d = decide(&p, ("bob", "app", "psql"), sql, &Ctx::default());
        assert!(
            matches!(d.error, Some(DecisionError::OverrideForbidden { .. })),
            "{:?}",
            d.error
        );
        assert_eq!(d.effective, Action::Block);
    }

    #[test]
    fn overrides_allow_named_rules_with_a_reason() {
        let p = Policy::from_config(&Config::default());
        let sql = "/* ddlgate:allow require-concurrent-index-creation reason=\"table has 10 rows\" */ CREATE INDEX i ON t (x)";
        let d = decide(&p, ANY, sql, &Ctx::in_tx());
        assert_eq!(d.effective, Action::Allow);
        assert_eq!(
            d.verdicts[0].overridden.as_deref(),
            Some("table has 10 rows")
        );
        // Trailing line comments work too, and several rules can be named.
        let sql = "DROP INDEX i -- ddlgate:allow require-concurrent-index-deletion,unparsed-ddl reason=\"maintenance window\"";
        assert_eq!(decide(&p, ANY, sql, &Ctx::in_tx()).effective, Action::Allow);
        // An override for a different rule does not help.
        let sql = "/* ddlgate:allow unparsed-ddl reason=\"x\" */ CREATE INDEX i ON t (x)";
        assert_eq!(decide(&p, ANY, sql, &Ctx::in_tx()).effective, Action::Block);
    }

    #[test]
    fn bad_overrides_are_refused() {
        for (comment, expected) in [
            ("/* ddlgate:allow reason=\"x\" */", OverrideError::NoRules),
            ("/* ddlgate:allow */", OverrideError::NoRules),
            (
                "/* ddlgate:allow no-such-rule reason=\"x\" */",
                OverrideError::UnknownRule("no-such-rule".into()),
            ),
            ("/* ddlgate:allow unparsed-ddl */", OverrideError::NoReason),
            (
                "/* ddlgate:allow unparsed-ddl reason=\"\" */",
                OverrideError::NoReason,
            ),
        ] {
            let sql = format!("{comment} CREATE INDEX CONCURRENTLY i ON t (x)");
            let err = parse_overrides(sql.as_bytes(), 0, sql.len(), LexOptions::default())
                .expect_err(comment);
            assert_eq!(err, expected, "{comment}");
        }
        // A look-alike inside a string is not a comment.
        let sql = "SELECT '/* ddlgate:allow unparsed-ddl reason=\"x\" */'";
        assert_eq!(
            parse_overrides(sql.as_bytes(), 0, sql.len(), LexOptions::default()),
            Ok(vec![])
        );
    }

    #[test]
    fn decisions_are_counted_per_rule_and_action() {
        let p = Policy::from_config(&Config::default());
        let counters = crate::metrics::DecisionCounters::default();
        counters.record(&decide(&p, ANY, "CREATE INDEX i ON t (x)", &Ctx::in_tx()));
        counters.record(&decide(&p, ANY, "CREATE INDEX i ON t (x)", &Ctx::default()));
        let sql = "/* ddlgate:allow require-concurrent-index-creation reason=\"r\" */ CREATE INDEX i ON t (x)";
        counters.record(&decide(&p, ANY, sql, &Ctx::in_tx()));
        assert_eq!(
            counters.rule_action("require-concurrent-index-creation", Action::Block),
            1
        );
        assert_eq!(
            counters.rule_action("require-concurrent-index-creation", Action::Rewrite),
            1
        );
        assert_eq!(
            counters.rule_action("require-concurrent-index-creation", Action::Allow),
            1
        );
        assert_eq!(counters.overrides("require-concurrent-index-creation"), 1);
    }

    #[test]
    fn shipped_guardrail_profiles() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/guardrail.toml");
        let cfg = Config::load_with_env(Some(&path), &Default::default(), Vec::new())
            .expect("config/guardrail.toml loads");
        let p = Policy::from_config(&cfg);
        assert_eq!(p.profile_for("migrator", "app", "rails").name, "migrations");
        for app in [
            "psql",
            "pgAdmin 4 - CONN:123",
            "DBeaver 24.1.0 - Main",
            "DataGrip 2024.2",
        ] {
            assert_eq!(p.profile_for("alice", "app", app).name, "humans", "{app}");
        }
        assert_eq!(p.profile_for("app", "app", "puma").name, "default");
        // The migration user gets the rewrite; a human gets a block, with no way around it.
        let d = decide(
            &p,
            ("migrator", "app", "rails"),
            "CREATE INDEX i ON t (x)",
            &Ctx::default(),
        );
        assert_eq!(d.effective, Action::Rewrite);
        let d = decide(
            &p,
            ("alice", "app", "psql"),
            "CREATE INDEX i ON t (x)",
            &Ctx::default(),
        );
        assert_eq!(d.effective, Action::Block);
        let sql = "/* ddlgate:allow ban-drop-table reason=\"old\" */ DROP TABLE t";
        let d = decide(&p, ("alice", "app", "psql"), sql, &Ctx::default());
        assert!(matches!(
            d.error,
            Some(DecisionError::OverrideForbidden { .. })
        ));
        let d = decide(&p, ("migrator", "app", "rails"), sql, &Ctx::default());
        assert_eq!(d.effective, Action::Allow);
        // The application is only observed.
        let d = decide(&p, ("app", "app", "puma"), "DROP TABLE t", &Ctx::in_tx());
        assert_eq!((d.intended, d.effective), (Action::Warn, Action::Allow));
        // The backfill guard: warn for migrations, block for humans, off for the application.
        let migrations = p.profile_for("migrator", "app", "rails");
        let humans = p.profile_for("alice", "app", "psql");
        let app = p.profile_for("app", "app", "puma");
        assert!(migrations.backfill.enabled && humans.backfill.enabled);
        assert!(!app.backfill.enabled);
        assert_eq!(
            migrations.action_for(crate::rules::LARGE_BACKFILL),
            Action::Warn
        );
        assert_eq!(
            humans.action_for(crate::rules::LARGE_BACKFILL),
            Action::Block
        );
        assert_eq!(humans.backfill.max_rows, 100_000);
    }

    #[test]
    fn backfill_settings_are_inherited_field_by_field() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("b.toml");
        std::fs::write(
            &path,
            r#"
[policy.backfill]
enabled = true
max_rows = 500
[[profiles]]
name = "strict"
match = { user = "ops" }
backfill = { action = "block" }
[[profiles]]
name = "off"
match = { user = "app" }
backfill = { enabled = false }
[[profiles]]
name = "ruled"
match = { user = "r" }
backfill = { action = "block" }
rules = { "large-backfill" = "allow" }
"#,
        )
        .expect("write");
        let cfg = Config::load_with_env(Some(&path), &Default::default(), Vec::new())
            .expect("valid config");
        let p = Policy::from_config(&cfg);
        let base = p.profile_for("x", "d", "a");
        assert_eq!((base.backfill.enabled, base.backfill.max_rows), (true, 500));
        assert_eq!(base.action_for(crate::rules::LARGE_BACKFILL), Action::Warn);
        let strict = p.profile_for("ops", "d", "a");
        assert_eq!(
            (strict.backfill.enabled, strict.backfill.max_rows),
            (true, 500)
        );
        assert_eq!(
            strict.action_for(crate::rules::LARGE_BACKFILL),
            Action::Block
        );
        assert!(!p.profile_for("app", "d", "a").backfill.enabled);
        // A rules table naming the rule wins over backfill.action.
        assert_eq!(
            p.profile_for("r", "d", "a")
                .action_for(crate::rules::LARGE_BACKFILL),
            Action::Allow
        );
        let described = describe_effective(&cfg);
        assert!(
            described
                .contains("backfill: on (UPDATE/DELETE/MERGE estimated above 500 rows: block)"),
            "{described}"
        );
        assert!(described.contains("backfill: off"), "{described}");
        // The default policy has it off.
        assert!(
            !Policy::from_config(&Config::default())
                .default
                .backfill
                .enabled
        );
    }
}

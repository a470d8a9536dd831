//! Running a recipe (phase 2 of the DDL lane, instead of the statement): the safe steps of a
//! multi-step rewrite (`crate::recipe`), each after its precheck, under the guard where its lock
//! blocks traffic; the client sees the CommandComplete of the statement it sent, or an error
//! naming the steps that ran.

use bytes::Bytes;
use tokio::time::Instant;

use super::channel::query_frame;
use super::{Epilogue, Sent};
use crate::error::SessionError;
use crate::guard::{self, GuardPlan};
use crate::session::relay::Relay;
use crate::session::relay::lone::LoneUnit;

impl Relay {
    /// Runs a multi-step rewrite: each step after its precheck (already done → skipped), under
    /// the guard (short `lock_timeout` and retries for steps whose lock blocks traffic, the
    /// `statement_timeout` lifted for long SHARE UPDATE EXCLUSIVE ones). The client gets the
    /// CommandComplete of its own statement — or, when a step fails, an error saying exactly
    /// which steps ran.
    ///
    /// For a lone extended-protocol unit (`unit`: its description and frames) the client gets
    /// the replies the server gives that unit: its Parse's own answer (the statement is
    /// prepared as written first, so a Parse error arrives where the server's would, and the
    /// prepared statement exists afterwards as it would), BindComplete and what its Describe
    /// says of a utility statement, then the steps' notices and the CommandComplete or error
    /// in place of its Execute's.
    pub(super) async fn run_recipe(
        &mut self,
        recipe: crate::recipe::Recipe,
        unit: Option<(LoneUnit, Bytes)>,
        mut epilogue: Epilogue,
        cfg: &crate::config::GuardConfig,
        plan: &GuardPlan,
        began: Instant,
    ) -> Result<(), SessionError> {
        if let Some((u, frame)) = &unit {
            match self
                .answer_up_to_execute(u, frame, epilogue, Sent::Extended)
                .await?
            {
                Some(e) => epilogue = e,
                // The Parse failed: the server discards the rest of the unit.
                None => return Ok(()),
            }
            if u.parse_len > 0 {
                // The server holds the client's statement as written now: a later Bind of it
                // runs the steps again.
                self.st
                    .remember_recipe(&frame.slice(..u.parse_len), &recipe);
            }
        }
        // A lone unit's steps run under ddlgate's own statement name: the unnamed statement
        // stays the one its Parse prepared (or the client's, untouched), as the server leaves
        // it after the unit.
        let sent = if unit.is_some() {
            Sent::Extended
        } else {
            Sent::Query
        };
        self.run_steps(recipe, sent, epilogue, cfg, plan, began)
            .await
    }

    async fn run_steps(
        &mut self,
        recipe: crate::recipe::Recipe,
        sent: Sent,
        mut epilogue: Epilogue,
        cfg: &crate::config::GuardConfig,
        plan: &GuardPlan,
        began: Instant,
    ) -> Result<(), SessionError> {
        let counters = self.shared.clone();
        let old = self.inject(&[guard::settings_sql(None, None)]).await?;
        let (old_lock, old_statement) = old
            .pair()
            .unwrap_or_else(|| ("0".to_owned(), "0".to_owned()));
        epilogue.settings = Some((old_lock.clone(), old_statement.clone()));
        let total = recipe.steps.len();
        let mut done: Vec<String> = Vec::new();
        for (i, step) in recipe.steps.iter().enumerate() {
            let k = i + 1;
            if let Some(pre) = &step.skip_if {
                let r = self.inject(&[pre.sql()]).await?;
                if r.is_true() {
                    done.push(format!("{k} (already done: {})", pre.describe()));
                    continue;
                }
            }
            let guarded = cfg.enabled && step.lock.blocks_traffic();
            let (lock, statement) =
                guard::step_settings(cfg, (&old_lock, &old_statement), guarded, step.long_running);
            self.inject(&[guard::restore_sql(Some((&lock, &statement)), &[])])
                .await?;
            let mut attempt_no = 0u32;
            let failure = loop {
                attempt_no += 1;
                let error = match sent {
                    Sent::Query => {
                        self.attempt(&query_frame(step.sql.as_bytes())?, usize::MAX)
                            .await?
                            .error
                    }
                    Sent::Extended | Sent::Opening { .. } => {
                        self.inject_bytes(&[step.sql.as_bytes()], false, true)
                            .await?
                            .error
                    }
                };
                let Some(error) = error else { break None };
                if error.code == "55P03" && guarded {
                    let blockers = self.blockers(plan).await?;
                    let wait = guard::backoff(cfg, attempt_no, fastrand::f64());
                    if attempt_no < cfg.max_attempts && began.elapsed() + wait <= cfg.max_wait_ms {
                        counters.counters.guard.retries.increment(1);
                        self.tell(
                            &format!(
                                "ddlgate: step {k} of {total} could not get its lock within {} ms (attempt {attempt_no}); retrying in {} ms. Blocked by: {}",
                                cfg.lock_timeout_ms.as_millis(),
                                wait.as_millis(),
                                guard::describe_blockers(&blockers)
                            ),
                            None,
                        )
                        .await?;
                        self.pause(wait).await?;
                        continue;
                    }
                    counters.counters.guard.exhausted.increment(1);
                    break Some((error, guard::describe_blockers(&blockers)));
                }
                break Some((error, String::new()));
            };
            if let Some((error, blockers)) = failure {
                let ran = if done.is_empty() {
                    "none".to_owned()
                } else {
                    done.join(", ")
                };
                let message = format!(
                    "ddlgate: step {k} of {total} of the safe rewrite failed: {}",
                    error.message
                );
                let detail = format!(
                    "Failed step: {}. Steps completed before it: {ran}. {}",
                    step.sql,
                    if blockers.is_empty() {
                        String::new()
                    } else {
                        format!("Blocking sessions: {blockers}.")
                    }
                );
                let code = if error.code.len() == 5 {
                    error.code.clone()
                } else {
                    "XX000".to_owned()
                };
                return self
                    .fail_with(epilogue, sent, &code, message, detail, "Fix the cause and run the original statement again: the steps already done are detected and skipped.")
                    .await;
            }
            done.push(k.to_string());
        }
        let status = self.st.proto.tx();
        self.write_journal(status).await?;
        self.epilogue_or_later(epilogue, status).await?;
        let tag = recipe.kind.command_tag();
        // One CommandComplete per statement of the client's the steps replaced.
        for _ in 0..recipe.kind.statements() {
            self.io
                .to_client
                .push(crate::protocol::responses::command_complete(tag).freeze());
        }
        self.io
            .to_client
            .push(crate::protocol::responses::ready_for_query(status).freeze());
        self.set_tx(status);
        self.audit_guarded("ok", None);
        Ok(())
    }
}

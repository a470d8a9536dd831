//! Running a recipe (phase 2 of the DDL lane, instead of the statement): the safe steps of a
//! multi-step rewrite (`crate::recipe`), each after its precheck, under the guard where its lock
//! blocks traffic; the client sees the CommandComplete of the statement it sent, or an error
//! naming the steps that ran.

use tokio::time::Instant;

use super::Epilogue;
use super::channel::query_frame;
use crate::error::SessionError;
use crate::guard::{self, GuardPlan};
use crate::session::relay::Relay;

impl Relay {
    /// Runs a multi-step rewrite: each step after its precheck (already done → skipped), under
    /// the guard (short `lock_timeout` and retries for steps whose lock blocks traffic, the
    /// `statement_timeout` lifted for long SHARE UPDATE EXCLUSIVE ones). The client gets the
    /// CommandComplete of its own statement — or, when a step fails, an error saying exactly
    /// which steps ran.
    pub(super) async fn run_recipe(
        &mut self,
        recipe: crate::recipe::Recipe,
        mut epilogue: Epilogue,
        cfg: &crate::config::GuardConfig,
        plan: &GuardPlan,
        began: Instant,
    ) -> Result<(), SessionError> {
        let counters = self.shared.clone();
        let old = self.inject(&guard::settings_sql(None, None)).await?;
        let (old_lock, old_statement) = old
            .pair()
            .unwrap_or_else(|| ("0".to_owned(), "0".to_owned()));
        epilogue.settings = Some((old_lock.clone(), old_statement.clone()));
        let total = recipe.steps.len();
        let mut done: Vec<String> = Vec::new();
        for (i, step) in recipe.steps.iter().enumerate() {
            let k = i + 1;
            if let Some(pre) = &step.skip_if {
                let r = self.inject(&pre.sql()).await?;
                if r.is_true() {
                    done.push(format!("{k} (already done: {})", pre.describe()));
                    continue;
                }
            }
            let guarded = cfg.enabled && step.lock.blocks_traffic();
            let (lock, statement) =
                guard::step_settings(cfg, (&old_lock, &old_statement), guarded, step.long_running);
            self.inject(&guard::restore_sql(Some((&lock, &statement)), &[]))
                .await?;
            let mut attempt_no = 0u32;
            let failure = loop {
                attempt_no += 1;
                let a = self
                    .attempt(&query_frame(step.sql.as_bytes())?, usize::MAX)
                    .await?;
                let Some(error) = a.error else { break None };
                if a.lock_timeout && guarded {
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
                    .fail_with(epilogue, &code, message, detail, "Fix the cause and run the original statement again: the steps already done are detected and skipped.")
                    .await;
            }
            done.push(k.to_string());
        }
        let status = self.st.proto.tx();
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

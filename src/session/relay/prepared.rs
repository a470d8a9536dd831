//! Prepared statements the relay must remember after their Parse: DDL, decided at Parse but
//! run at each later Bind/Execute, and statements that change settings when executed.
//!
//! A prepared DDL statement keeps the SQL the server holds and the context it was decided in
//! (transaction status, the session's settings generation, its transaction generation). A Bind
//! in another context decides it again (see `Relay::on_bind`), so a decision never rests on
//! facts that changed since (a TEMP table gone at COMMIT, another `search_path`).
//!
//! Tracking is bounded by `guard.max_tracked_statements` and never forgets: past the limit a
//! new prepared DDL statement is refused at its Parse. A slot is freed only when the server
//! confirms the statement is gone — Close('S'), `DEALLOCATE`, `DISCARD ALL`, or an unnamed
//! statement replaced by a Parse — i.e. when the protocol unit that did it ends without an
//! error (a Close skipped after an error frees nothing).

use std::collections::HashMap;

use crate::guard::GuardPlan;
use crate::protocol::TxStatus;

/// Prepared DDL SQL longer than this is not kept: such a statement is refused, rather than
/// decided again, when it runs in another context.
pub(super) const MAX_KEPT_SQL: usize = 64 * 1024;
/// At most this much prepared DDL SQL is kept per session in all; beyond it, as above. Bounds
/// what tracking costs a session whatever its statements.
pub(super) const MAX_KEPT_TOTAL: usize = 1024 * 1024;

/// Where a statement was decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct DecidedIn {
    /// Transaction status the decision assumed.
    pub tx: TxStatus,
    /// The session's settings generation: bumped by every ParameterStatus and every statement
    /// that may change a setting (`search_path` is not reported by the server).
    pub settings: u64,
    /// The session's transaction generation: bumped whenever a transaction ends (what it
    /// created, TEMP tables on COMMIT DROP, SET LOCAL, are gone).
    pub transactions: u64,
}

/// One prepared DDL statement.
#[derive(Debug)]
pub(super) struct PreparedDdl {
    /// The lock guard's plan for its execution.
    pub plan: Option<GuardPlan>,
    /// The safe steps that run instead of it, when it was prepared as written to run as a
    /// recipe (by a lone unit, `relay/lone.rs`); a Bind that cannot run them is refused.
    pub recipe: Option<crate::recipe::Recipe>,
    /// `recipe` is the one of the statement this Parse replaced in the tracking table: a
    /// Parse of a name in use fails on the server, which keeps the old statement, so its
    /// steps stay until a Close confirms the name was free (or this Parse's own steps are
    /// confirmed).
    recipe_carried: bool,
    /// The SQL the server holds for it (after any rewrite), when short enough to keep.
    pub sql: Option<Vec<u8>>,
    pub decided_in: DecidedIn,
    /// The protocol unit of its Parse, when its decision rests on facts that hold only then
    /// (`analysis::Plan::fresh_facts_only`): a Bind in another unit decides it again.
    pub fresh_unit: Option<u64>,
    /// When it was tracked, so that a removal requested earlier never removes a later one.
    seq: u64,
}

impl PreparedDdl {
    fn recipe_carried_closed(&mut self) {
        if std::mem::take(&mut self.recipe_carried) {
            self.recipe = None;
        }
    }
}

/// A prepared UPDATE/DELETE/MERGE with parameters, kept while the backfill guard is on: its
/// estimate is read at each Bind that executes it, with the values bound
/// (`session::ddl::bound`).
#[derive(Debug)]
pub(super) struct PreparedBound {
    /// The SQL the server holds for it.
    pub sql: Vec<u8>,
    /// Its Parse's parameter type count and OIDs, undecoded.
    pub param_types: Vec<u8>,
    /// Where its statement starts in `sql` (the analyzer keys estimates by it).
    pub at: usize,
    /// When it was tracked, as for prepared DDL.
    seq: u64,
}

impl PreparedBound {
    /// Bytes it counts against `Prepared::kept_bound`.
    fn size(&self) -> usize {
        self.sql.len() + self.param_types.len()
    }
}

/// A change waiting for its protocol unit to succeed: a removal, or the safe steps a
/// statement prepared as written runs as (known to be the server's only once its Parse
/// succeeded).
#[derive(Debug, Clone)]
pub(super) enum Untrack {
    One(Vec<u8>, u64),
    All(u64),
    Steps(Vec<u8>, u64, Box<crate::recipe::Recipe>),
}

/// The tracking tables.
#[derive(Debug, Default)]
pub(super) struct Prepared {
    ddl: HashMap<Vec<u8>, PreparedDdl>,
    /// Statements that may change settings when executed: `true` when they may change how SQL
    /// is lexed.
    settings: HashMap<Vec<u8>, bool>,
    /// More such statements than are tracked were prepared: every Bind is assumed to change
    /// settings and lexing (fail closed; costs only this session a wait).
    settings_overflow: bool,
    /// Prepared UPDATE/DELETE/MERGE with parameters (backfill guard on), by name; bounded like
    /// `ddl` (count and kept bytes), on a budget of its own so that it never crowds out DDL.
    bound: HashMap<Vec<u8>, PreparedBound>,
    seq: u64,
    /// Bytes of SQL kept in `ddl`.
    kept: usize,
    /// Bytes of SQL and parameter types kept in `bound`.
    kept_bound: usize,
}

/// Tracking is full: the Parse must be refused.
#[derive(Debug)]
pub(super) struct Full;

impl Prepared {
    pub fn is_empty(&self) -> bool {
        self.ddl.is_empty()
            && self.settings.is_empty()
            && !self.settings_overflow
            && self.bound.is_empty()
    }

    /// Keeps a prepared UPDATE/DELETE/MERGE with parameters for its Binds; false when it is
    /// not kept (`cap` statements kept already, or its text beyond what may be kept). It
    /// replaces one kept under the same name: the server refuses a Parse of a name in use
    /// (42P05, an error the client sees), so a client that prepares a name again most likely
    /// saw the earlier Parse fail (a typo corrected, a retry).
    pub fn note_bound(
        &mut self,
        name: &[u8],
        sql: &[u8],
        param_types: &[u8],
        at: usize,
        cap: usize,
    ) -> bool {
        self.forget_bound(name);
        let size = sql.len() + param_types.len();
        if self.bound.len() >= cap || size > MAX_KEPT_SQL || self.kept_bound + size > MAX_KEPT_TOTAL
        {
            return false;
        }
        self.seq += 1;
        self.kept_bound += size;
        self.bound.insert(
            name.to_vec(),
            PreparedBound {
                sql: sql.to_vec(),
                param_types: param_types.to_vec(),
                at,
                seq: self.seq,
            },
        );
        true
    }

    /// The prepared UPDATE/DELETE/MERGE with parameters `name`, when kept.
    pub fn bound(&self, name: &[u8]) -> Option<&PreparedBound> {
        self.bound.get(name)
    }

    /// `name` is kept as a prepared UPDATE/DELETE/MERGE with parameters.
    pub fn tracks_bound(&self, name: &[u8]) -> bool {
        self.bound.contains_key(name)
    }

    /// The server dropped its unnamed statement (a simple Query, any Parse of it).
    pub fn unnamed_dropped(&mut self) {
        if self.bound.is_empty() {
            return;
        }
        self.forget_bound(b"");
    }

    fn forget_bound(&mut self, name: &[u8]) {
        if let Some(old) = self.bound.remove(name) {
            self.kept_bound -= old.size();
        }
    }

    /// Tracks a prepared DDL statement (replacing one of the same name, as an unnamed
    /// statement is replaced), unless `cap` are tracked already.
    #[allow(clippy::too_many_arguments)]
    pub fn track(
        &mut self,
        name: &[u8],
        plan: Option<GuardPlan>,
        sql: &[u8],
        decided_in: DecidedIn,
        fresh_unit: Option<u64>,
        cap: usize,
    ) -> Result<(), Full> {
        if self.ddl.len() >= cap && !self.ddl.contains_key(name) {
            return Err(Full);
        }
        self.seq += 1;
        let mut carried = None;
        if let Some(old) = self.ddl.remove(name) {
            self.forget(&old);
            // Only the unnamed statement can be replaced by a Parse.
            carried = old.recipe.filter(|_| !name.is_empty());
        }
        let keep = sql.len() <= MAX_KEPT_SQL && self.kept + sql.len() <= MAX_KEPT_TOTAL;
        if keep {
            self.kept += sql.len();
        }
        self.ddl.insert(
            name.to_vec(),
            PreparedDdl {
                plan,
                recipe_carried: carried.is_some(),
                recipe: carried,
                sql: keep.then(|| sql.to_vec()),
                decided_in,
                fresh_unit,
                seq: self.seq,
            },
        );
        Ok(())
    }

    fn forget(&mut self, d: &PreparedDdl) {
        self.kept -= d.sql.as_ref().map_or(0, Vec::len);
    }

    /// Remembers a statement that changes settings when executed.
    pub fn note_settings(&mut self, name: &[u8], lexing: bool, cap: usize) {
        if self.settings.len() >= cap && !self.settings.contains_key(name) {
            self.settings_overflow = true;
            return;
        }
        self.settings.insert(name.to_vec(), lexing);
    }

    /// What executing `name` may do to settings: `None` (nothing), `Some(lexing)`.
    pub fn settings_effect(&self, name: &[u8]) -> Option<bool> {
        if self.settings_overflow {
            return Some(true);
        }
        self.settings.get(name).copied()
    }

    /// `name` is a tracked prepared DDL statement.
    pub fn tracks_ddl(&self, name: &[u8]) -> bool {
        self.ddl.contains_key(name)
    }

    pub fn ddl_mut(&mut self, name: &[u8]) -> Option<&mut PreparedDdl> {
        self.ddl.get_mut(name)
    }

    /// A removal of `name` (or of all, `None`) to apply once the server confirms it.
    pub fn untrack_request(&self, name: Option<&[u8]>) -> Untrack {
        match name {
            Some(n) => Untrack::One(n.to_vec(), self.seq),
            None => Untrack::All(self.seq),
        }
    }

    /// The server confirmed it holds `name` as tracked (its Parse succeeded just now): it runs
    /// as `recipe`'s steps.
    pub fn steps_confirmed(&mut self, name: &[u8], recipe: &crate::recipe::Recipe) {
        if let Some(d) = self.ddl.get_mut(name) {
            d.recipe = Some(recipe.clone());
            d.recipe_carried = false;
        }
    }

    /// The steps `name`, tracked just now, runs as once its Parse succeeds.
    pub fn steps_request(&self, name: &[u8], recipe: crate::recipe::Recipe) -> Untrack {
        Untrack::Steps(name.to_vec(), self.seq, Box::new(recipe))
    }

    /// The unit that requested `u` succeeded: the statement(s) are gone from the server, or
    /// the statement is the server's.
    pub fn apply(&mut self, u: Untrack) {
        match u {
            Untrack::Steps(name, seq, recipe) => {
                if let Some(d) = self.ddl.get_mut(&name).filter(|d| d.seq == seq) {
                    d.recipe = Some(*recipe);
                    d.recipe_carried = false;
                }
            }
            Untrack::One(name, seq) => {
                if self.ddl.get(&name).is_some_and(|d| d.seq <= seq)
                    && let Some(old) = self.ddl.remove(&name)
                {
                    self.forget(&old);
                } else if let Some(d) = self.ddl.get_mut(&name) {
                    // Closed before a later Parse of the name: that Parse is what the server
                    // holds, not the statement whose steps it carried.
                    d.recipe_carried_closed();
                }
                self.settings.remove(&name);
                if self.bound.get(&name).is_some_and(|b| b.seq <= seq) {
                    self.forget_bound(&name);
                }
            }
            Untrack::All(seq) => {
                let mut freed = 0;
                self.ddl.retain(|_, d| {
                    let keep = d.seq > seq;
                    d.recipe_carried_closed();
                    if !keep {
                        freed += d.sql.as_ref().map_or(0, Vec::len);
                    }
                    keep
                });
                self.kept -= freed;
                let mut freed = 0;
                self.bound.retain(|_, b| {
                    let keep = b.seq > seq;
                    if !keep {
                        freed += b.size();
                    }
                    keep
                });
                self.kept_bound -= freed;
                self.settings.clear();
                self.settings_overflow = false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> DecidedIn {
        DecidedIn {
            tx: TxStatus::Idle,
            settings: 0,
            transactions: 0,
        }
    }

    #[test]
    fn full_refuses_and_only_confirmed_removals_free_slots() {
        let mut p = Prepared::default();
        p.track(b"a", None, b"DROP TABLE a", ctx(), None, 2)
            .expect("room");
        p.track(b"b", None, b"DROP TABLE b", ctx(), None, 2)
            .expect("room");
        assert!(
            p.track(b"c", None, b"DROP TABLE c", ctx(), None, 2)
                .is_err()
        );
        // Replacing a tracked name needs no new slot.
        p.track(b"b", None, b"DROP TABLE b2", ctx(), None, 2)
            .expect("same name");
        let close_a = p.untrack_request(Some(b"a"));
        p.apply(close_a);
        p.track(b"c", None, b"DROP TABLE c", ctx(), None, 2)
            .expect("freed");
        // A removal requested before a statement of the same name was tracked again keeps it.
        let stale = p.untrack_request(Some(b"c"));
        p.track(b"c", None, b"DROP TABLE c2", ctx(), None, 2)
            .expect("replace");
        p.apply(stale);
        assert!(p.ddl_mut(b"c").is_some());
        let all = p.untrack_request(None);
        p.apply(all);
        assert!(p.is_empty());
        assert_eq!(p.kept, 0);
    }

    #[test]
    fn steps_are_kept_once_their_parse_succeeded_and_only_for_that_statement() {
        let recipe = crate::recipe::Recipe {
            kind: crate::recipe::RecipeKind::ForeignKey,
            target: crate::sql::statement::Name::bare("c"),
            steps: Vec::new(),
        };
        let mut p = Prepared::default();
        p.track(
            b"fk",
            None,
            b"ALTER TABLE c ADD FOREIGN KEY (p) REFERENCES p",
            ctx(),
            None,
            4,
        )
        .expect("room");
        let confirm = p.steps_request(b"fk", recipe.clone());
        // Not before the unit succeeded.
        assert!(p.ddl_mut(b"fk").is_some_and(|d| d.recipe.is_none()));
        // A later Parse of the same name is another statement: an old confirmation is void.
        let stale = confirm.clone();
        p.track(b"fk", None, b"DROP TABLE x", ctx(), None, 4)
            .expect("replace");
        p.apply(stale);
        assert!(p.ddl_mut(b"fk").is_some_and(|d| d.recipe.is_none()));
        let confirm = p.steps_request(b"fk", recipe);
        p.apply(confirm);
        assert!(p.ddl_mut(b"fk").is_some_and(|d| d.recipe.is_some()));
        // Parse of the name again: the server refuses it (the name is in use) and keeps the
        // statement with steps, so the tracking keeps its steps…
        p.track(b"fk", None, b"DROP TABLE y", ctx(), None, 4)
            .expect("replace");
        assert!(p.ddl_mut(b"fk").is_some_and(|d| d.recipe.is_some()));
        // …until a Close requested before that Parse confirms the name was free.
        let mut q = Prepared::default();
        q.track(
            b"fk",
            None,
            b"ALTER TABLE c ADD FOREIGN KEY (p) REFERENCES p",
            ctx(),
            None,
            4,
        )
        .expect("room");
        let steps = q.steps_request(
            b"fk",
            p.ddl_mut(b"fk")
                .and_then(|d| d.recipe.clone())
                .expect("steps"),
        );
        q.apply(steps);
        let close = q.untrack_request(Some(b"fk"));
        q.track(b"fk", None, b"DROP TABLE y", ctx(), None, 4)
            .expect("replace");
        assert!(q.ddl_mut(b"fk").is_some_and(|d| d.recipe.is_some()));
        q.apply(close);
        assert!(
            q.ddl_mut(b"fk").is_some_and(|d| d.recipe.is_none()),
            "the new statement runs as itself"
        );
        // The unnamed statement is replaced by every Parse: nothing is carried.
        q.track(
            b"",
            None,
            b"ALTER TABLE c ADD CHECK (x > 0)",
            ctx(),
            None,
            4,
        )
        .expect("room");
        let steps = q.steps_request(
            b"",
            crate::recipe::Recipe {
                kind: crate::recipe::RecipeKind::Check,
                target: crate::sql::statement::Name::bare("c"),
                steps: Vec::new(),
            },
        );
        q.apply(steps);
        q.track(b"", None, b"DROP TABLE z", ctx(), None, 4)
            .expect("replace");
        assert!(q.ddl_mut(b"").is_some_and(|d| d.recipe.is_none()));
    }

    #[test]
    fn prepared_statements_with_parameters_are_kept_bounded_until_closed() {
        let mut p = Prepared::default();
        let sql = b"UPDATE t SET x = $1";
        assert!(p.note_bound(b"s0", sql, b"\0\0", 0, 2));
        assert!(!p.is_empty());
        // A Parse of the same name again: the earlier one most likely failed.
        let delete = b"DELETE FROM t WHERE x = $1";
        assert!(p.note_bound(b"s0", delete, b"\0\0", 0, 2));
        assert_eq!(p.bound(b"s0").map(|b| b.sql.as_slice()), Some(&delete[..]));
        assert_eq!((p.kept, p.kept_bound), (0, delete.len() + 2));
        assert!(p.note_bound(b"", sql, b"\0\0", 0, 2));
        assert!(!p.note_bound(b"s1", sql, b"\0\0", 0, 2), "full");
        // The unnamed statement is replaced by every Parse of it, dropped by a simple Query.
        assert!(p.note_bound(b"", b"DELETE FROM t WHERE x = $1", b"\0\0", 0, 2));
        p.unnamed_dropped();
        assert!(!p.tracks_bound(b""));
        let too_long = vec![b'x'; MAX_KEPT_SQL + 1];
        assert!(!p.note_bound(b"s2", &too_long, b"\0\0", 0, 10));
        let close = p.untrack_request(Some(b"s0"));
        p.apply(close);
        assert!(p.is_empty());
        assert_eq!(p.kept_bound, 0);
        assert!(p.note_bound(b"a", sql, b"\0\0", 0, 2));
        let all = p.untrack_request(None);
        p.apply(all);
        assert!(p.is_empty());
        assert_eq!(p.kept_bound, 0);
    }

    #[test]
    fn kept_sql_is_bounded_per_session() {
        let mut p = Prepared::default();
        let sql = vec![b'x'; MAX_KEPT_SQL];
        for i in 0..MAX_KEPT_TOTAL / MAX_KEPT_SQL + 3 {
            p.track(format!("s{i}").as_bytes(), None, &sql, ctx(), None, 1000)
                .expect("room");
        }
        assert!(p.kept <= MAX_KEPT_TOTAL);
        assert!(p.ddl_mut(b"s0").is_some_and(|d| d.sql.is_some()));
        let last = format!("s{}", MAX_KEPT_TOTAL / MAX_KEPT_SQL + 2);
        assert!(p.ddl_mut(last.as_bytes()).is_some_and(|d| d.sql.is_none()));
        let close = p.untrack_request(Some(b"s0"));
        p.apply(close);
        assert_eq!(p.kept, MAX_KEPT_TOTAL - MAX_KEPT_SQL);
    }
}

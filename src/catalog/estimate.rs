//! The planner's row estimate for an UPDATE, DELETE or MERGE (the backfill guard, `large-backfill`):
//! the SQL that asks for it and the reading of its answer. Like the catalog facts, it is read on
//! the client's own upstream connection at a statement boundary, in the client's transaction
//! (so it sees the client's `search_path`, tables created earlier in the transaction, and the
//! same statistics the statement will be planned with).
//!
//! Why it is safe to run there:
//!
//! - `EXPLAIN` without `ANALYZE` plans the statement and never executes it: no row is read or
//!   written. Planning does evaluate what the planner may fold at plan time — immutable
//!   functions with constant arguments, and the statement's own CTEs are not run. It takes the
//!   statement's table locks (ROW EXCLUSIVE on the target), which the statement itself takes
//!   a moment later anyway.
//! - Inside a transaction block the EXPLAIN runs under a savepoint of ddlgate's own that is
//!   always rolled back ([`SAVEPOINT`], [`UNDO_STEPS`]): an EXPLAIN that fails (the statement refers
//!   to a column that does not exist, a table created later in the same message) leaves the
//!   client's transaction as it was, and the locks it took in the savepoint are released. Each
//!   is a unit of ddlgate's own (one named prepared statement each), so that nothing the
//!   client's text does (an unterminated comment swallowing what follows) can make the
//!   savepoint and the EXPLAIN fail together. In a failed transaction nothing is run at all (the session's `may_inject`).
//! - The client's statement is sent as its own bytes (the lexer's span of exactly one
//!   statement, in the session's encoding), prefixed by `EXPLAIN (FORMAT JSON)` and followed by
//!   a newline (a trailing `--` comment ends there).
//! - Planning waits for the statement's table lock. A client's CancelRequest meant for the
//!   statement then cancels the EXPLAIN, and its `statement_timeout`/`lock_timeout` stop the
//!   EXPLAIN as they would the statement: the statement then fails with that same error
//!   ([`Answer::Stopped`]) rather than being sent after it.
//! - A statement with parameters (`$1`, extended protocol) cannot be planned without values
//!   before PostgreSQL 16: it is planned with the client's own values instead, the same
//!   [`explain_sql`] text prepared through the extended protocol with the client's parameter
//!   types and bound with exactly its Bind's values and formats (a custom plan for those
//!   values), under a statement and portal name of ddlgate's own, never the unnamed ones;
//!   inside a transaction block under the same savepoint, its steps ([`SAVEPOINT`],
//!   [`UNDO_STEPS`]) named statements too, as every query of ddlgate's own
//!   (`session::ddl::bound`). Only a unit `[Parse] Bind [Describe] Execute Sync`
//!   complete in what ddlgate has read, its Bind within `limits.max_statement_bytes`, is
//!   examined so; any other is not examined, and counted
//!   (`ddlgate_backfill_estimates_total{outcome="parameters"}`).
//!
//! The answer: `[{"Plan": {…}}]`. Every `ModifyTable` node whose `Operation` is `Update`,
//! `Delete` or `Merge` (the top node, or a data-modifying CTE's under `InitPlan`) estimates the rows it
//! modifies in its input: its child with `Parent Relationship` `Outer` (PostgreSQL 14 and later;
//! an `Append` over the partitions of a partitioned target) or its `Member` children (one per
//! partition before 14). Its own `Plan Rows` is 0 without RETURNING. Children under `InitPlan`
//! or `SubPlan` (`SET x = (SELECT …)`) are not rows modified. The estimate is the sum over the
//! ModifyTable nodes.

use serde_json::Value;

/// The savepoint the EXPLAIN runs under inside a transaction block.
pub const SAVEPOINT: &str = "SAVEPOINT ddlgate_estimate";

/// Undoes the EXPLAIN inside a transaction block, failed or not (locks it took released): one
/// statement an item, as ddlgate's own queries run them (a prepared statement holds one).
pub const UNDO_STEPS: [&str; 2] = [
    "ROLLBACK TO SAVEPOINT ddlgate_estimate",
    "RELEASE SAVEPOINT ddlgate_estimate",
];

/// `EXPLAIN (FORMAT JSON)` of one statement's text, as the client wrote it.
pub fn explain_sql(statement: &[u8]) -> Vec<u8> {
    const PREFIX: &[u8] = b"EXPLAIN (FORMAT JSON) ";
    let mut out = Vec::with_capacity(PREFIX.len() + statement.len() + 1);
    out.extend_from_slice(PREFIX);
    out.extend_from_slice(statement);
    out.push(b'\n');
    out
}

/// What the planner expects an UPDATE/DELETE to modify.
#[derive(Debug, Clone, PartialEq)]
pub struct Estimate {
    /// Rows modified, summed over the plan's UPDATE/DELETE ModifyTable nodes.
    pub rows: u64,
    /// The first target's name as the plan gives it (unqualified), for messages.
    pub table: Option<String>,
    /// What the statement does to the rows (the first ModifyTable's operation).
    pub op: Modification,
}

/// The operation of a ModifyTable the backfill guard counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Modification {
    Update,
    Delete,
    /// `MERGE` (PostgreSQL 15+): its input is every source row joined to the target, matched
    /// or not — the rows it may update, delete or insert.
    Merge,
}

impl Modification {
    /// The SQL command, for messages.
    pub fn command(self) -> &'static str {
        match self {
            Modification::Update => "UPDATE",
            Modification::Delete => "DELETE",
            Modification::Merge => "MERGE",
        }
    }
}

/// What the EXPLAIN of one statement came to, for the decision.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// The planner's estimate.
    Rows(Estimate),
    /// The server stopped the EXPLAIN the way it would have stopped the statement itself: the
    /// client cancelled it (57014, its CancelRequest reached ddlgate's EXPLAIN, which waited
    /// for the statement's lock), or the session's `statement_timeout` (57014) or
    /// `lock_timeout` (55P03) ran out. The statement fails with that error instead of being
    /// sent after it, so that a cancel is not lost and a timeout is not waited twice.
    Stopped { code: &'static str, message: String },
}

impl Answer {
    /// The answer an EXPLAIN error with SQLSTATE `code` stands for, when it is one the
    /// statement itself would have got.
    pub fn stopped(code: &str, message: &str) -> Option<Answer> {
        let code = match code {
            "57014" => "57014",
            "55P03" => "55P03",
            _ => return None,
        };
        Some(Answer::Stopped {
            code,
            message: message.to_owned(),
        })
    }
}

/// Reads `EXPLAIN (FORMAT JSON)`'s answer; `None` when the plan modifies nothing by UPDATE or
/// DELETE (a `WITH` whose UPDATE was only a word, a rule that does something else).
pub fn parse_estimate(json: &str) -> Result<Option<Estimate>, serde_json::Error> {
    let doc: Value = serde_json::from_str(json)?;
    let mut found: Option<Estimate> = None;
    let plans = doc
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| d.get("Plan"));
    for plan in plans {
        walk(plan, &mut found, 0);
    }
    Ok(found)
}

/// Plans are trees of bounded depth in practice; the bound keeps a hostile document (there is
/// none: it is the server's) from recursing without end.
const MAX_DEPTH: usize = 256;

fn walk(node: &Value, found: &mut Option<Estimate>, depth: usize) {
    if depth > MAX_DEPTH {
        return;
    }
    let children = node.get("Plans").and_then(Value::as_array);
    let operation = node.get("Operation").and_then(Value::as_str);
    if node.get("Node Type").and_then(Value::as_str) == Some("ModifyTable")
        && let Some(op) = match operation {
            Some("Update") => Some(Modification::Update),
            Some("Delete") => Some(Modification::Delete),
            Some("Merge") => Some(Modification::Merge),
            _ => None,
        }
    {
        let rows: f64 = children
            .into_iter()
            .flatten()
            .filter(|c| {
                matches!(
                    c.get("Parent Relationship").and_then(Value::as_str),
                    Some("Outer" | "Member")
                )
            })
            .filter_map(|c| c.get("Plan Rows").and_then(Value::as_f64))
            .sum();
        // `as` saturates: a NaN or negative estimate is 0, a huge one u64::MAX.
        let rows = rows.round() as u64;
        let e = found.get_or_insert_with(|| Estimate {
            rows: 0,
            table: node
                .get("Relation Name")
                .and_then(Value::as_str)
                .map(str::to_owned),
            op,
        });
        e.rows = e.rows.saturating_add(rows);
    }
    for c in children.into_iter().flatten() {
        walk(c, found, depth + 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_modified_come_from_the_modify_tables_input() {
        // PostgreSQL 15's answer for `UPDATE t SET x = 1 WHERE x > 10` (trimmed).
        let update = r#"[{"Plan": {"Node Type": "ModifyTable", "Operation": "Update",
            "Relation Name": "t", "Plan Rows": 0, "Plans": [{"Node Type": "Seq Scan",
            "Parent Relationship": "Outer", "Relation Name": "t", "Plan Rows": 199980}]}}]"#;
        assert_eq!(
            parse_estimate(update).expect("json"),
            Some(Estimate {
                rows: 199_980,
                table: Some("t".into()),
                op: Modification::Update
            })
        );
        // A scalar subquery in SET is an InitPlan: not rows modified.
        let init = r#"[{"Plan": {"Node Type": "ModifyTable", "Operation": "Update",
            "Relation Name": "t", "Plan Rows": 98, "Plans": [
              {"Node Type": "Result", "Parent Relationship": "InitPlan", "Plan Rows": 1000000},
              {"Node Type": "Index Scan", "Parent Relationship": "Outer", "Plan Rows": 98}]}}]"#;
        assert_eq!(
            parse_estimate(init).expect("json").map(|e| e.rows),
            Some(98)
        );
        // Partitions before PostgreSQL 14: one Member child per partition.
        let members = r#"[{"Plan": {"Node Type": "ModifyTable", "Operation": "Delete",
            "Relation Name": "p1", "Plans": [
              {"Node Type": "Seq Scan", "Parent Relationship": "Member", "Plan Rows": 10},
              {"Node Type": "Seq Scan", "Parent Relationship": "Member", "Plan Rows": 32}]}}]"#;
        let e = parse_estimate(members).expect("json").expect("estimate");
        assert_eq!((e.rows, e.op), (42, Modification::Delete));
        // A data-modifying CTE: the ModifyTable is under the top node.
        let cte = r#"[{"Plan": {"Node Type": "Aggregate", "Plan Rows": 1, "Plans": [
              {"Node Type": "ModifyTable", "Operation": "Delete", "Parent Relationship": "InitPlan",
               "Relation Name": "t", "Plan Rows": 48, "Plans": [
                 {"Node Type": "Index Scan", "Parent Relationship": "Outer", "Plan Rows": 48}]},
              {"Node Type": "CTE Scan", "Parent Relationship": "Outer", "Plan Rows": 48}]}}]"#;
        assert_eq!(parse_estimate(cte).expect("json").map(|e| e.rows), Some(48));
        // No UPDATE/DELETE in the plan (an INSERT, a SELECT … FOR UPDATE).
        let insert = r#"[{"Plan": {"Node Type": "ModifyTable", "Operation": "Insert",
            "Plans": [{"Node Type": "Result", "Parent Relationship": "Outer", "Plan Rows": 5}]}}]"#;
        assert_eq!(parse_estimate(insert).expect("json"), None);
        assert!(parse_estimate("not json").is_err());
        // Absurd numbers saturate instead of wrapping.
        let huge = r#"[{"Plan": {"Node Type": "ModifyTable", "Operation": "Update", "Plans": [
            {"Parent Relationship": "Outer", "Plan Rows": 1e300},
            {"Parent Relationship": "Outer", "Plan Rows": -5}]}}]"#;
        assert_eq!(
            parse_estimate(huge).expect("json").map(|e| e.rows),
            Some(u64::MAX)
        );
    }

    #[test]
    fn the_explain_ends_a_trailing_line_comment() {
        assert_eq!(
            explain_sql(b"UPDATE t SET x = 1 -- why"),
            b"EXPLAIN (FORMAT JSON) UPDATE t SET x = 1 -- why\n"
        );
    }
}

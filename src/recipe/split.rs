//! Splitting an `ALTER TABLE` of several actions into one statement per action (issue 12): the
//! reading half. [`actions`] cuts the client's text at its top-level commas and re-reads every
//! action as an `ALTER TABLE` of its own, which must come out as exactly the action the whole
//! statement was understood to hold; [`brief_step`] turns an action that may run as written
//! into a resumable step. Which actions may run as written, which need their own recipe and
//! which cannot be split at all is the policy's call, made per action by `analysis`.
//!
//! Separate statements reproduce the whole only when running the actions one after another in
//! the order written does what PostgreSQL does with them together. PostgreSQL does not run
//! them in the order written: it runs every action of one kind before the next kind (drops,
//! then type changes, then new columns, then column attributes, then constraints and defaults,
//! then the rest: the `AT_PASS_*` passes of `tablecmds.c`). [`out_of_order`] refuses a
//! statement whose written order differs from that (`ADD CHECK (c > 0), ADD COLUMN c` works as
//! one statement and fails split; `ADD COLUMN c …, ALTER c DROP DEFAULT` fails as one and
//! would succeed split).

use super::{Precheck, RecipeError, Step, StepKind, Target};
use crate::sql::lexer::{LexOptions, TokenKind};
use crate::sql::naming::truncate_name;
use crate::sql::parse;
use crate::sql::reader::Stmt;
use crate::sql::statement::{AlterOp, ConstraintKind, Ddl, DdlKind, LockMode, Name};

/// One action of a multi-action `ALTER TABLE`, as a statement of its own.
#[derive(Debug, Clone)]
pub struct Action {
    /// Its place in the statement, from 1.
    pub position: usize,
    /// The action as the client wrote it (`ADD COLUMN c int`).
    pub text: String,
    /// `ALTER TABLE <table> <text>`: what runs when the action runs as written.
    pub sql: String,
    /// `sql` as understood: an `ALTER TABLE` with this one action.
    pub ddl: Ddl,
}

impl Action {
    /// The single action of [`Action::ddl`].
    pub fn op(&self) -> Option<&AlterOp> {
        match &self.ddl.kind {
            DdlKind::AlterTable { ops, .. } => ops.first(),
            _ => None,
        }
    }
}

/// The actions of `sql[start..end]`, understood as `ddl` (an `ALTER TABLE` of two or more
/// actions), each as an `ALTER TABLE` of its own on the same table. Refused when the statement
/// cannot be split with the same meaning: `IF EXISTS`, `ONLY`, or text that does not read back
/// as exactly the actions the whole was understood to hold.
pub fn actions(
    sql: &[u8],
    start: usize,
    end: usize,
    lex: LexOptions,
    ddl: &Ddl,
) -> Result<Vec<Action>, RecipeError> {
    let DdlKind::AlterTable {
        name,
        only,
        if_exists,
        ops,
    } = &ddl.kind
    else {
        return Err(RecipeError::NoRecipe(ddl.kind.label()));
    };
    if ops.len() < 2 {
        return Err(RecipeError::NoRecipe("an ALTER TABLE of one action"));
    }
    if *if_exists {
        // Each step would need its own IF EXISTS, and a table dropped half-way would leave a
        // half-applied statement instead of the no-op the client asked for.
        return Err(RecipeError::Unsupported(
            "ALTER TABLE IF EXISTS with several actions",
        ));
    }
    if *only {
        // The recipes' concurrent index builds have no ONLY form: a split would change what
        // happens on inheritance children.
        return Err(RecipeError::Unsupported(
            "ALTER TABLE ONLY with several actions",
        ));
    }
    let st = Stmt::new(sql, start, end, lex)?;
    let head = st.alter_head()?;
    if head.table != *name || head.only {
        return Err(RecipeError::Unreadable("the table name"));
    }
    let target = Target {
        name: truncate_name(name),
        only: false,
    };
    let alter = target.alter();
    let pieces = top_level_pieces(&st, head.action)?;
    if pieces.len() != ops.len() {
        return Err(RecipeError::Unreadable("the actions"));
    }
    let mut out = Vec::with_capacity(pieces.len());
    for (k, ((first, last), op)) in pieces.into_iter().zip(ops).enumerate() {
        let text = st.text(first, last)?;
        let one = format!("{alter} {text}");
        let understood = parse::understand(one.as_bytes(), 0, one.len(), lex);
        match &understood.kind {
            DdlKind::AlterTable {
                name: n,
                only: false,
                if_exists: false,
                ops: again,
            } if *n == target.name && again.as_slice() == std::slice::from_ref(op) => {}
            _ => return Err(RecipeError::Unreadable("an action on its own")),
        }
        out.push(Action {
            position: k + 1,
            text,
            sql: one,
            ddl: understood,
        });
    }
    Ok(out)
}

/// Token ranges `(first, last)` of the comma-separated actions from `from` on, cutting only at
/// commas outside parentheses and brackets.
fn top_level_pieces(st: &Stmt<'_>, from: usize) -> Result<Vec<(usize, usize)>, RecipeError> {
    let mut pieces = Vec::new();
    let mut depth = 0usize;
    let mut begin = from;
    for i in from..st.toks.len() {
        // `[` and `]` are operator tokens to the lexer (`ARRAY[1, 2]`, `int[]`).
        if st.kind(i) == Some(TokenKind::LParen) || st.is_op(i, "[") {
            depth += 1;
        } else if st.kind(i) == Some(TokenKind::RParen) || st.is_op(i, "]") {
            depth = depth
                .checked_sub(1)
                .ok_or(RecipeError::Unreadable("the parentheses"))?;
        } else if depth == 0 && st.kind(i) == Some(TokenKind::Comma) {
            if i == begin {
                return Err(RecipeError::Unreadable("an empty action"));
            }
            pieces.push((begin, i - 1));
            begin = i + 1;
        }
    }
    if begin >= st.toks.len() || depth != 0 {
        return Err(RecipeError::Unreadable("the last action"));
    }
    pieces.push((begin, st.toks.len() - 1));
    Ok(pieces)
}

/// PostgreSQL's pass for an action (`AT_PASS_*` in `tablecmds.c`, coarsened): every action of
/// a lower pass runs before any of a higher one, whatever the written order.
fn pass(op: &AlterOp) -> u8 {
    match op {
        AlterOp::DropColumn { .. }
        | AlterOp::DropConstraint { .. }
        | AlterOp::DropNotNull { .. }
        | AlterOp::DropDefault { .. } => 0,
        AlterOp::AlterColumnType { .. } => 1,
        AlterOp::AddColumn(_) => 2,
        AlterOp::SetNotNull { .. } => 3,
        AlterOp::AddConstraint(_) | AlterOp::SetDefault { .. } => 4,
        _ => 5,
    }
}

/// The first action written before one PostgreSQL would run ahead of it, as `(earlier, later)`
/// positions (from 1): run in the written order, the split could differ from the whole.
pub fn out_of_order(ops: &[AlterOp]) -> Option<(usize, usize)> {
    let mut highest = (0u8, 0usize);
    for (k, op) in ops.iter().enumerate() {
        let p = pass(op);
        if p < highest.0 {
            return Some((highest.1 + 1, k + 1));
        }
        if p > highest.0 {
            highest = (p, k);
        }
    }
    None
}

/// The columns an action changes, for knowing which catalog facts a later action can no longer
/// trust.
pub fn column_of(op: &AlterOp) -> Option<&str> {
    match op {
        AlterOp::AddColumn(c) => Some(&c.name),
        AlterOp::DropColumn { name } => Some(name),
        AlterOp::AlterColumnType { column, .. }
        | AlterOp::SetNotNull { column }
        | AlterOp::DropNotNull { column }
        | AlterOp::SetDefault { column }
        | AlterOp::DropDefault { column } => Some(column),
        _ => None,
    }
}

/// An action that may run as written (the policy allows it alone), as a resumable step: a
/// precheck where running it again would fail or do something else (`ADD COLUMN`, `DROP
/// COLUMN`, `ADD`/`DROP CONSTRAINT`), none where running it again changes nothing (`SET
/// DEFAULT`, `DROP NOT NULL`, …). `Err` says why it cannot be made resumable.
pub fn brief_step(table: &Name, action: &Action) -> Result<Step, &'static str> {
    let op = action
        .op()
        .ok_or("ddlgate could not read it as an action of its own")?;
    let (lock, long_running, skip_if) = match op {
        AlterOp::AddColumn(c) => (
            LockMode::AccessExclusive,
            false,
            Some(Precheck::ColumnExists {
                table: table.clone(),
                column: c.name.clone(),
            }),
        ),
        AlterOp::DropColumn { name } => (
            LockMode::AccessExclusive,
            false,
            Some(Precheck::Not(Box::new(Precheck::ColumnExists {
                table: table.clone(),
                column: name.clone(),
            }))),
        ),
        AlterOp::DropConstraint { name } => (
            LockMode::AccessExclusive,
            false,
            Some(Precheck::Not(Box::new(Precheck::ConstraintNamed {
                table: table.clone(),
                name: name.clone(),
            }))),
        ),
        AlterOp::AddConstraint(c) => {
            let Some(name) = &c.name else {
                return Err(
                    "an unnamed constraint cannot be found again on a re-run (name it with \
                     CONSTRAINT)",
                );
            };
            let lock = match c.kind {
                ConstraintKind::ForeignKey { .. } => LockMode::ShareRowExclusive,
                _ => LockMode::AccessExclusive,
            };
            (
                lock,
                false,
                Some(Precheck::ConstraintNamed {
                    table: table.clone(),
                    name: name.clone(),
                }),
            )
        }
        AlterOp::AlterColumnType { using: true, .. } => {
            return Err("its USING expression would be applied again on a re-run");
        }
        AlterOp::AlterColumnType { .. }
        | AlterOp::SetNotNull { .. }
        | AlterOp::DropNotNull { .. }
        | AlterOp::SetDefault { .. }
        | AlterOp::DropDefault { .. }
        | AlterOp::RowLevelSecurity => (LockMode::AccessExclusive, false, None),
        AlterOp::EnableTrigger | AlterOp::DisableTrigger => {
            (LockMode::ShareRowExclusive, false, None)
        }
        // Scans the table under SHARE UPDATE EXCLUSIVE: reads and writes continue.
        AlterOp::ValidateConstraint { .. } => (LockMode::ShareUpdateExclusive, true, None),
        _ => {
            return Err(
                "ddlgate does not split this kind of action (it cannot tell that running it \
                 again after a failure is harmless)",
            );
        }
    };
    Ok(Step {
        sql: action.sql.clone(),
        kind: StepKind::AlterTableAction,
        lock,
        locked: table.clone(),
        long_running,
        skip_if,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(sql: &str) -> Result<Vec<Action>, RecipeError> {
        let ddl = parse::understand(sql.as_bytes(), 0, sql.len(), LexOptions::default());
        actions(sql.as_bytes(), 0, sql.len(), LexOptions::default(), &ddl)
    }

    #[test]
    fn each_action_becomes_an_alter_table_of_its_own() {
        let cases: &[(&str, &[&str])] = &[
            (
                "ALTER TABLE big ADD COLUMN c int, ADD CONSTRAINT big_c_chk CHECK (c > 0)",
                &[
                    "ALTER TABLE big ADD COLUMN c int",
                    "ALTER TABLE big ADD CONSTRAINT big_c_chk CHECK (c > 0)",
                ],
            ),
            (
                "alter table S.\"Big\" drop constraint big_fk, add constraint big_fk foreign key (id, x) references refd (id, x) /* c */",
                &[
                    "ALTER TABLE s.\"Big\" drop constraint big_fk",
                    "ALTER TABLE s.\"Big\" add constraint big_fk foreign key (id, x) references refd (id, x)",
                ],
            ),
            (
                "ALTER TABLE t ADD COLUMN n numeric(10, 2) DEFAULT 0, ALTER COLUMN x SET DEFAULT f(1, 2);",
                &[
                    "ALTER TABLE t ADD COLUMN n numeric(10, 2) DEFAULT 0",
                    "ALTER TABLE t ALTER COLUMN x SET DEFAULT f(1, 2)",
                ],
            ),
            (
                "ALTER TABLE t ADD COLUMN a int[] DEFAULT ARRAY[1, 2], DROP COLUMN b",
                &[
                    "ALTER TABLE t ADD COLUMN a int[] DEFAULT ARRAY[1, 2]",
                    "ALTER TABLE t DROP COLUMN b",
                ],
            ),
        ];
        for (sql, want) in cases {
            let got: Vec<String> = split(sql)
                .unwrap_or_else(|e| panic!("{sql}: {e}"))
                .into_iter()
                .map(|a| a.sql)
                .collect();
            assert_eq!(got, *want, "{sql}");
        }
    }

    #[test]
    fn what_cannot_be_split_is_refused() {
        for sql in [
            "ALTER TABLE IF EXISTS t ADD COLUMN c int, ADD COLUMN d int",
            "ALTER TABLE ONLY t ADD COLUMN c int, ADD COLUMN d int",
            "ALTER TABLE t ADD COLUMN c int",
            "DROP TABLE t",
        ] {
            assert!(split(sql).is_err(), "{sql}");
        }
    }

    #[test]
    fn written_order_must_be_postgres_order() {
        let ops = |sql: &str| match parse::understand(
            sql.as_bytes(),
            0,
            sql.len(),
            LexOptions::default(),
        )
        .kind
        {
            DdlKind::AlterTable { ops, .. } => ops,
            other => panic!("{other:?}"),
        };
        let cases: &[(&str, Option<(usize, usize)>)] = &[
            (
                "ALTER TABLE t ADD COLUMN c int, ADD CONSTRAINT k CHECK (c > 0)",
                None,
            ),
            (
                "ALTER TABLE t DROP CONSTRAINT k, ADD CONSTRAINT k CHECK (c > 0)",
                None,
            ),
            (
                "ALTER TABLE t ADD COLUMN c int DEFAULT 0, ALTER COLUMN c SET NOT NULL",
                None,
            ),
            (
                "ALTER TABLE t ADD CONSTRAINT k CHECK (c > 0), ADD COLUMN c int",
                Some((1, 2)),
            ),
            (
                "ALTER TABLE t ADD COLUMN c int DEFAULT 1, ALTER COLUMN c DROP DEFAULT",
                Some((1, 2)),
            ),
            (
                "ALTER TABLE t ADD COLUMN c int, DROP COLUMN c",
                Some((1, 2)),
            ),
            (
                "ALTER TABLE t DROP COLUMN a, ADD COLUMN b int, ALTER COLUMN b SET NOT NULL, ALTER COLUMN a TYPE text",
                Some((3, 4)),
            ),
        ];
        for (sql, want) in cases {
            assert_eq!(out_of_order(&ops(sql)), *want, "{sql}");
        }
    }

    #[test]
    fn brief_steps_are_resumable() {
        let t = Name::bare("t");
        let step = |sql: &str| {
            let a = split(&format!("{sql}, ALTER COLUMN zz SET DEFAULT 1")).expect("split");
            brief_step(&t, &a[0])
        };
        let s = step("ALTER TABLE t ADD COLUMN c int").expect("add column");
        assert_eq!(s.sql, "ALTER TABLE t ADD COLUMN c int");
        assert_eq!(
            s.skip_if.as_ref().map(Precheck::describe).as_deref(),
            Some("column c exists on t")
        );
        let s = step("ALTER TABLE t DROP CONSTRAINT k").expect("drop constraint");
        assert_eq!(
            s.skip_if.as_ref().map(Precheck::describe).as_deref(),
            Some("constraint k is already gone from t")
        );
        let s = step("ALTER TABLE t ADD CONSTRAINT k CHECK (c > 0) NOT VALID").expect("add");
        assert_eq!(
            s.skip_if.as_ref().map(Precheck::describe).as_deref(),
            Some("a constraint k exists on t")
        );
        assert!(
            step("ALTER TABLE t ALTER COLUMN c DROP NOT NULL")
                .expect("idempotent")
                .skip_if
                .is_none()
        );
        let v = step("ALTER TABLE t VALIDATE CONSTRAINT k").expect("validate");
        assert!(v.long_running && v.lock == LockMode::ShareUpdateExclusive);
        assert!(step("ALTER TABLE t ADD CHECK (c > 0) NOT VALID").is_err());
        assert!(step("ALTER TABLE t ALTER COLUMN c TYPE text USING c || 'x'").is_err());
        assert!(step("ALTER TABLE t OWNER TO bob").is_err());
    }

    #[test]
    fn never_panics_on_odd_input() {
        let inputs = [
            "ALTER TABLE t ADD COLUMN c int,",
            "ALTER TABLE t , ,",
            "ALTER TABLE t ADD COLUMN c int, ADD CONSTRAINT k CHECK (c > 0))",
            "ALTER TABLE t ADD COLUMN c int, ADD CONSTRAINT k CHECK ((c > 0)",
            "ALTER TABLE t ADD COLUMN a int[, DROP COLUMN b",
            "ALTER TABLE t ADD COLUMN a int], DROP COLUMN b",
            "ALTER TABLE",
            "ALTER TABLE t",
            "ALTER TABLE t ADD COLUMN é int, DROP COLUMN \"",
            "",
        ];
        let two = Ddl {
            kind: DdlKind::AlterTable {
                name: Name::bare("t"),
                only: false,
                if_exists: false,
                ops: vec![
                    AlterOp::DropColumn { name: "b".into() },
                    AlterOp::DropColumn { name: "c".into() },
                ],
            },
            understood: crate::sql::statement::Understood::Parsed,
        };
        for sql in inputs {
            let _ = split(sql);
            for (start, end) in [(0, sql.len()), (3, 2), (0, 1000)] {
                assert!(
                    actions(sql.as_bytes(), start, end, LexOptions::default(), &two).is_err(),
                    "{sql}"
                );
            }
        }
    }
}

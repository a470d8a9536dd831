//! Recipe `DROP TABLE partition` (E4): `ALTER TABLE parent DETACH PARTITION p CONCURRENTLY`
//! (R13, PostgreSQL 14+; SHARE UPDATE EXCLUSIVE on the parent instead of ACCESS EXCLUSIVE),
//! then `DROP TABLE p` on the table no longer attached. Called from [`super::plan`].
//!
//! Resumable: a concurrent detach interrupted between its two transactions leaves the
//! partition "pending detach" (`pg_inherits.inhdetachpending`), which only `DETACH PARTITION
//! … FINALIZE` completes — that step runs first, and only then; the detach is skipped once the
//! table is no longer a partition of the parent; the drop once the table is gone.

use super::{Context, Precheck, Recipe, RecipeError, RecipeKind, Step, StepKind};
use crate::sql::naming::truncate_name;
use crate::sql::quote;
use crate::sql::reader::Stmt;
use crate::sql::statement::{LockMode, Name};

/// First release with `DETACH PARTITION … CONCURRENTLY` and `FINALIZE`.
const PG14: u32 = 140_000;

pub(super) fn drop_partition(
    st: &Stmt<'_>,
    names: &[Name],
    cascade: bool,
    ctx: &Context<'_>,
) -> Result<Recipe, RecipeError> {
    let Some(parent) = ctx.partition_of else {
        return Err(RecipeError::NoRecipe(
            "DROP TABLE of a table that is not a partition",
        ));
    };
    let [name] = names else {
        return Err(RecipeError::Unsupported("DROP TABLE of several tables"));
    };
    if cascade {
        return Err(RecipeError::Unsupported("DROP TABLE … CASCADE"));
    }
    if ctx.server_version_num < PG14 {
        return Err(RecipeError::ServerTooOld {
            what: "DETACH PARTITION … CONCURRENTLY",
            needs: PG14,
            server: ctx.server_version_num,
        });
    }
    // The text must be exactly `DROP TABLE [IF EXISTS] name [RESTRICT]`.
    let bad = RecipeError::Unreadable("the DROP TABLE statement");
    if !(st.word(0, "DROP") && st.word(1, "TABLE")) {
        return Err(bad);
    }
    let mut i = 2;
    if st.word(i, "IF") && st.word(i + 1, "EXISTS") {
        i += 2;
    }
    let (written, mut j) = st.relation(i).ok_or(bad.clone())?;
    if written != *name {
        return Err(bad);
    }
    if st.word(j, "RESTRICT") {
        j += 1;
    }
    if st.tok(j).is_some() {
        return Err(bad);
    }
    let table = truncate_name(name);
    let detach = |how: &str| {
        format!(
            "ALTER TABLE {} DETACH PARTITION {} {how}",
            quote::name_if_needed(parent),
            quote::name_if_needed(&table)
        )
    };
    let attached = Precheck::PartitionOf {
        parent: parent.clone(),
        partition: table.clone(),
    };
    let steps = vec![
        Step {
            sql: detach("FINALIZE"),
            kind: StepKind::FinalizeDetach,
            // SHARE UPDATE EXCLUSIVE on the parent, ACCESS EXCLUSIVE on the partition (which
            // queries on the parent no longer see); it waits for transactions using the parent.
            lock: LockMode::ShareUpdateExclusive,
            locked: parent.clone(),
            long_running: true,
            skip_if: Some(Precheck::Not(Box::new(Precheck::DetachPending {
                parent: parent.clone(),
                partition: table.clone(),
            }))),
        },
        Step {
            sql: detach("CONCURRENTLY"),
            kind: StepKind::DetachConcurrently,
            // SHARE UPDATE EXCLUSIVE on the parent and the partition, then (second transaction,
            // after every transaction using the parent ended) ACCESS EXCLUSIVE on the partition.
            lock: LockMode::ShareUpdateExclusive,
            locked: parent.clone(),
            long_running: true,
            skip_if: Some(Precheck::Not(Box::new(attached))),
        },
        Step {
            sql: format!("DROP TABLE {}", quote::name_if_needed(&table)),
            kind: StepKind::DropTable,
            // The detached table alone (and the tables it references by foreign key).
            lock: LockMode::AccessExclusive,
            locked: table.clone(),
            long_running: false,
            skip_if: Some(Precheck::Not(Box::new(Precheck::RelationExists {
                name: table.clone(),
            }))),
        },
    ];
    Ok(Recipe {
        kind: RecipeKind::DropPartition,
        target: name.clone(),
        steps,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recipe::tests::{PG15, plan_with};

    #[test]
    fn a_partition_is_detached_concurrently_then_dropped() {
        let parent = Name::new(Some("public"), "ev");
        let on = |version, partition_of| Context {
            server_version_num: version,
            partitions: None,
            partition_of,
        };
        let ok = on(PG15, Some(&parent));
        // (statement, steps)
        let cases = [
            (
                "DROP TABLE ev_2025",
                [
                    "ALTER TABLE public.ev DETACH PARTITION ev_2025 FINALIZE",
                    "ALTER TABLE public.ev DETACH PARTITION ev_2025 CONCURRENTLY",
                    "DROP TABLE ev_2025",
                ],
            ),
            (
                "drop table if exists Public.\"Ev 2025\" restrict",
                [
                    "ALTER TABLE public.ev DETACH PARTITION public.\"Ev 2025\" FINALIZE",
                    "ALTER TABLE public.ev DETACH PARTITION public.\"Ev 2025\" CONCURRENTLY",
                    "DROP TABLE public.\"Ev 2025\"",
                ],
            ),
        ];
        for (sql, expected) in cases {
            let r = plan_with(sql, &ok).expect(sql);
            let got: Vec<&str> = r.steps.iter().map(|s| s.sql.as_str()).collect();
            assert_eq!(got, expected, "{sql}");
            assert_eq!(r.kind, RecipeKind::DropPartition);
            assert_eq!(r.kind.command_tag(), "DROP TABLE");
        }
        let r = plan_with("DROP TABLE ev_2025", &ok).expect("recipe");
        let t = Name::bare("ev_2025");
        assert_eq!(
            r.steps[0].skip_if,
            Some(Precheck::Not(Box::new(Precheck::DetachPending {
                parent: parent.clone(),
                partition: t.clone()
            })))
        );
        assert_eq!(
            r.steps[1].skip_if,
            Some(Precheck::Not(Box::new(Precheck::PartitionOf {
                parent: parent.clone(),
                partition: t.clone()
            })))
        );
        assert_eq!(
            r.steps[2].skip_if,
            Some(Precheck::Not(Box::new(Precheck::RelationExists {
                name: t
            })))
        );
        assert!(r.steps[1].long_running && r.steps[1].lock == LockMode::ShareUpdateExclusive);
        assert!(!r.steps[2].long_running && r.steps[2].lock == LockMode::AccessExclusive);
        // Refused: not a partition, several tables, CASCADE, PostgreSQL 13, other text.
        let refused = [
            ("DROP TABLE ev_2025", on(PG15, None)),
            ("DROP TABLE ev_2025, ev_2024", ok),
            ("DROP TABLE ev_2025 CASCADE", ok),
            ("DROP TABLE ev_2025", on(130_000, Some(&parent))),
        ];
        for (sql, c) in refused {
            assert!(plan_with(sql, &c).is_err(), "{sql}");
        }
    }
}

//! Recipe families built on concurrent index builds: R8/R9, UNIQUE and PRIMARY KEY through
//! `CREATE UNIQUE INDEX CONCURRENTLY` + `ADD CONSTRAINT … USING INDEX`, and R19, an index on a
//! partitioned table built partition by partition and attached to an `ON ONLY` parent. Also
//! the index name PostgreSQL would choose (`ChooseIndexColumnNames`), refused when unsure.

use super::ConstraintType;
use super::not_null::not_null_steps;
use super::read::IndexSpec;
use super::{
    Context, Partition, Precheck, Recipe, RecipeError, RecipeKind, Step, StepKind, Target,
};
use crate::sql::naming::{
    MAX_IDENTIFIER_BYTES, clip, element_name, name_addition, object_name, truncate, truncate_name,
};
use crate::sql::quote;
use crate::sql::reader::Stmt;
use crate::sql::statement::{LockMode, Name};

pub(super) fn index_constraint_allowed(ctx: &Context<'_>) -> Result<(), RecipeError> {
    if ctx.partitions.is_some() {
        return Err(RecipeError::Partitioned {
            what: "ADD CONSTRAINT … USING INDEX",
        });
    }
    Ok(())
}

/// R8/R9: an INVALID leftover is dropped, the unique index is built concurrently, then
/// attached as the constraint. A primary key first gets the NOT NULL recipe on every column:
/// `ADD PRIMARY KEY USING INDEX` would otherwise run `SET NOT NULL` with a full scan under
/// ACCESS EXCLUSIVE.
pub(super) fn index_constraint_steps(
    t: &Target,
    name: Option<String>,
    spec: &IndexSpec,
    ctx: &Context<'_>,
) -> Vec<Step> {
    let name = name.unwrap_or_else(|| {
        if spec.primary {
            object_name(t.relname(), None, "pkey")
        } else {
            let all: Vec<String> = spec.columns.iter().chain(&spec.include).cloned().collect();
            object_name(t.relname(), Some(&name_addition(&all)), "key")
        }
    });
    let mut steps = Vec::new();
    if spec.primary {
        for column in &spec.columns {
            steps.extend(not_null_steps(t, column, ctx));
        }
    }
    let mut create = format!(
        "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS {} ON {} ({})",
        quote::ident_if_needed(&name),
        quote::name_if_needed(&t.name),
        quote_list(&spec.columns)
    );
    if !spec.include.is_empty() {
        create.push_str(&format!(" INCLUDE ({})", quote_list(&spec.include)));
    }
    if let Some(nulls) = spec.nulls {
        create.push(' ');
        create.push_str(nulls);
    }
    if let Some(with) = &spec.with {
        create.push_str(" WITH ");
        create.push_str(with);
    }
    if let Some(ts) = &spec.tablespace {
        create.push_str(" TABLESPACE ");
        create.push_str(&quote::ident_if_needed(ts));
    }
    steps.extend(concurrent_build(&t.name, &name, create));
    let mut attach = format!(
        "{} ADD CONSTRAINT {} {} USING INDEX {}",
        t.alter(),
        quote::ident_if_needed(&name),
        if spec.primary {
            "PRIMARY KEY"
        } else {
            "UNIQUE"
        },
        quote::ident_if_needed(&name)
    );
    if let Some(attributes) = &spec.attributes {
        attach.push(' ');
        attach.push_str(attributes);
    }
    steps.push(Step {
        sql: attach,
        kind: StepKind::AddConstraintUsingIndex,
        lock: LockMode::AccessExclusive,
        locked: t.name.clone(),
        long_running: false,
        skip_if: Some(Precheck::ConstraintExists {
            table: t.name.clone(),
            name,
            contype: if spec.primary {
                ConstraintType::PrimaryKey
            } else {
                ConstraintType::Unique
            },
        }),
    });
    steps
}

/// Drop an INVALID leftover of `index` on `table`, then run `create` (a `CREATE … INDEX
/// CONCURRENTLY IF NOT EXISTS`) unless a valid index of that name is there.
fn concurrent_build(table: &Name, index: &str, create: String) -> [Step; 2] {
    let qualified = Name {
        schema: table.schema.clone(),
        name: index.to_owned(),
    };
    [
        Step {
            sql: format!(
                "DROP INDEX CONCURRENTLY IF EXISTS {}",
                quote::name_if_needed(&qualified)
            ),
            kind: StepKind::DropInvalidIndex,
            lock: LockMode::ShareUpdateExclusive,
            locked: table.clone(),
            // It waits for every transaction that might use the index.
            long_running: true,
            skip_if: Some(Precheck::Not(Box::new(Precheck::IndexInvalid {
                table: table.clone(),
                index: index.to_owned(),
            }))),
        },
        Step {
            sql: create,
            kind: StepKind::CreateIndexConcurrently,
            lock: LockMode::ShareUpdateExclusive,
            locked: table.clone(),
            long_running: true,
            skip_if: Some(Precheck::IndexValid {
                table: table.clone(),
                index: index.to_owned(),
            }),
        },
    ]
}

/// `CREATE [UNIQUE] INDEX [CONCURRENTLY] IF NOT EXISTS name ON t …` where the catalog shows an
/// INVALID index `name` on `t`, left by a failed concurrent build: as written, PostgreSQL finds
/// the name and skips ("relation already exists, skipping"), keeping the broken index. The
/// leftover is dropped concurrently (only while the catalog still shows it INVALID on `t`),
/// then the index is built concurrently. `schema` is the table's schema as the catalog
/// resolved it, so the DROP cannot reach an index of that name elsewhere on the search path.
pub(super) fn rebuild_invalid(
    st: &Stmt<'_>,
    name: &Name,
    table: &Name,
    unique: bool,
    schema: &str,
) -> Result<Recipe, RecipeError> {
    let parsed = st.create_index()?;
    if parsed.table != *table || parsed.name.as_deref() != Some(name.name.as_str()) {
        return Err(RecipeError::Unreadable("the index or table name"));
    }
    let index = truncate(&name.name);
    let resolved = Name {
        schema: Some(schema.to_owned()),
        name: truncate_name(table).name,
    };
    let create = format!(
        "{} CONCURRENTLY IF NOT EXISTS {} ON {} {}",
        if unique {
            "CREATE UNIQUE INDEX"
        } else {
            "CREATE INDEX"
        },
        quote::ident_if_needed(&index),
        quote::name_if_needed(&truncate_name(table)),
        parsed.tail
    );
    Ok(Recipe {
        kind: RecipeKind::RebuildInvalidIndex,
        target: table.clone(),
        steps: concurrent_build(&resolved, &index, create).to_vec(),
    })
}

/// R2: an index on a partitioned table, built without SHARE on the whole tree.
///
/// `CREATE INDEX … ON ONLY parent` records the index on the parent alone (INVALID while
/// partitions lack theirs). Each leaf partition gets its index concurrently and is attached;
/// a partition that is partitioned again gets its own `ON ONLY` index, its partitions are
/// handled the same way, and then it is attached. PostgreSQL marks each level valid once all
/// of its partitions are attached. Partition index names are chosen exactly as `CREATE INDEX`
/// on the parent chooses them (`<partition>_<columns>_idx`).
pub(super) fn partitioned_index(
    st: &Stmt<'_>,
    name: Option<&Name>,
    table: &Name,
    unique: bool,
    only: bool,
    ctx: &Context<'_>,
) -> Result<Recipe, RecipeError> {
    if only {
        return Err(RecipeError::AlreadySafe("CREATE INDEX … ON ONLY"));
    }
    let Some(partitions) = ctx.partitions else {
        return Err(RecipeError::NoRecipe(
            "CREATE INDEX on an ordinary table (a single-statement CONCURRENTLY rewrite)",
        ));
    };
    let parsed = st.create_index()?;
    if parsed.table != *table || parsed.name.as_ref() != name.map(|n| &n.name) {
        return Err(RecipeError::Unreadable("the index or table name"));
    }
    let columns = index_column_names(st, &parsed.elements, &parsed.include)?;
    let addition = name_addition(&columns);
    let parent = truncate_name(table);
    let index = match &parsed.name {
        Some(n) => truncate(n),
        None => object_name(&parent.name, Some(&addition), "idx"),
    };
    let plan = IndexPlan {
        unique,
        tail: parsed.tail,
        addition,
    };
    let mut steps = vec![plan.parent_step(&parent, &index)];
    plan.partition_steps(&parent, &index, partitions, &mut steps);
    Ok(Recipe {
        kind: RecipeKind::PartitionedIndex,
        target: table.clone(),
        steps,
    })
}

/// What every level of a partitioned index build shares.
struct IndexPlan {
    unique: bool,
    /// The client's text after the table name: `[USING m] (…) [INCLUDE …] [WHERE …]`.
    tail: String,
    /// `ChooseIndexNameAddition` of the index columns.
    addition: String,
}

impl IndexPlan {
    fn create(&self) -> &'static str {
        if self.unique {
            "CREATE UNIQUE INDEX"
        } else {
            "CREATE INDEX"
        }
    }

    fn parent_step(&self, table: &Name, index: &str) -> Step {
        Step {
            sql: format!(
                "{} IF NOT EXISTS {} ON ONLY {} {}",
                self.create(),
                quote::ident_if_needed(index),
                quote::name_if_needed(table),
                self.tail
            ),
            kind: StepKind::CreateParentIndex,
            // CREATE INDEX takes SHARE; with ONLY nothing is built, so it is held briefly.
            lock: LockMode::Share,
            locked: table.clone(),
            long_running: false,
            skip_if: Some(Precheck::IndexExists {
                table: table.clone(),
                index: index.to_owned(),
            }),
        }
    }

    fn partition_steps(
        &self,
        parent: &Name,
        parent_index: &str,
        partitions: &[Partition],
        steps: &mut Vec<Step>,
    ) {
        for p in partitions {
            let table = truncate_name(&p.name);
            let index = object_name(&table.name, Some(&self.addition), "idx");
            match &p.partitions {
                Some(children) => {
                    steps.push(self.parent_step(&table, &index));
                    self.partition_steps(&table, &index, children, steps);
                }
                None => {
                    let create = format!(
                        "{} CONCURRENTLY IF NOT EXISTS {} ON {} {}",
                        self.create(),
                        quote::ident_if_needed(&index),
                        quote::name_if_needed(&table),
                        self.tail
                    );
                    steps.extend(concurrent_build(&table, &index, create));
                }
            }
            let parent_qualified = Name {
                schema: parent.schema.clone(),
                name: parent_index.to_owned(),
            };
            let child_qualified = Name {
                schema: table.schema.clone(),
                name: index.clone(),
            };
            steps.push(Step {
                sql: format!(
                    "ALTER INDEX {} ATTACH PARTITION {}",
                    quote::name_if_needed(&parent_qualified),
                    quote::name_if_needed(&child_qualified)
                ),
                kind: StepKind::AttachIndex,
                // ACCESS EXCLUSIVE on the partition's index (SHARE UPDATE EXCLUSIVE on the
                // parent index, ACCESS SHARE on both tables), for a catalog change.
                lock: LockMode::AccessExclusive,
                locked: child_qualified,
                long_running: false,
                skip_if: Some(Precheck::IndexAttached {
                    parent_table: parent.clone(),
                    parent_index: parent_index.to_owned(),
                    table: table.clone(),
                    index: index.clone(),
                }),
            });
        }
    }
}

/// `ChooseIndexColumnNames` over the key elements then the `INCLUDE` columns: each element's
/// name (`FigureIndexColname`, `expr` when it has none), made unique by appending digits.
fn index_column_names(
    st: &Stmt<'_>,
    elements: &[(usize, usize)],
    include: &[String],
) -> Result<Vec<String>, RecipeError> {
    let unsure = RecipeError::NameNeeded(
        "ddlgate cannot tell which names PostgreSQL would give the partition indexes for \
         this index expression, so it cannot build them partition by partition",
    );
    let mut names = Vec::with_capacity(elements.len() + include.len());
    for &(from, to) in elements {
        names.push(
            element_name(st, from, to)
                .ok_or(unsure.clone())?
                .unwrap_or_else(|| "expr".to_owned()),
        );
    }
    names.extend(include.iter().map(|c| truncate(c)));
    let mut out: Vec<String> = Vec::new();
    for orig in names {
        let mut name = orig.clone();
        let mut n = 1u32;
        while out.contains(&name) {
            let digits = n.to_string();
            let keep = clip(&orig, MAX_IDENTIFIER_BYTES - digits.len());
            name = format!("{}{digits}", &orig[..keep]);
            n += 1;
        }
        out.push(name);
    }
    Ok(out)
}

fn quote_list(names: &[String]) -> String {
    names
        .iter()
        .map(|n| quote::ident_if_needed(n))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recipe::tests::{PG15, ctx, plan_with, refused, steps};
    use crate::sql::lexer::LexOptions;

    #[test]
    fn unique_and_primary_key_use_concurrent_indexes() {
        assert_eq!(
            steps("ALTER TABLE users ADD UNIQUE (email)"),
            [
                "DROP INDEX CONCURRENTLY IF EXISTS users_email_key",
                "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS users_email_key ON users (email)",
                "ALTER TABLE users ADD CONSTRAINT users_email_key UNIQUE USING INDEX \
                 users_email_key",
            ]
        );
        assert_eq!(
            steps(
                "ALTER TABLE s.t ADD CONSTRAINT t_uq UNIQUE NULLS NOT DISTINCT (a, b) INCLUDE (c) \
                 WITH (fillfactor = 90) USING INDEX TABLESPACE pg_default DEFERRABLE INITIALLY \
                 DEFERRED"
            ),
            [
                "DROP INDEX CONCURRENTLY IF EXISTS s.t_uq",
                "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS t_uq ON s.t (a, b) INCLUDE (c) \
                 NULLS NOT DISTINCT WITH (fillfactor = 90) TABLESPACE pg_default",
                "ALTER TABLE s.t ADD CONSTRAINT t_uq UNIQUE USING INDEX t_uq DEFERRABLE \
                 INITIALLY DEFERRED",
            ]
        );
        // INCLUDE columns are part of PostgreSQL's generated name.
        assert_eq!(
            steps("ALTER TABLE t ADD UNIQUE (a) INCLUDE (b)")[1],
            "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS t_a_b_key ON t (a) INCLUDE (b)"
        );
        assert_eq!(
            steps("ALTER TABLE accounts ADD PRIMARY KEY (id)"),
            [
                "ALTER TABLE accounts ADD CONSTRAINT accounts_id_ddlgate_nn CHECK (id IS NOT \
                 NULL) NOT VALID",
                "ALTER TABLE accounts VALIDATE CONSTRAINT accounts_id_ddlgate_nn",
                "ALTER TABLE accounts ALTER COLUMN id SET NOT NULL",
                "ALTER TABLE accounts DROP CONSTRAINT IF EXISTS accounts_id_ddlgate_nn",
                "DROP INDEX CONCURRENTLY IF EXISTS accounts_pkey",
                "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS accounts_pkey ON accounts (id)",
                "ALTER TABLE accounts ADD CONSTRAINT accounts_pkey PRIMARY KEY USING INDEX \
                 accounts_pkey",
            ]
        );
        let r = plan_with("ALTER TABLE t ADD UNIQUE (a)", &ctx(PG15)).expect("r");
        assert_eq!(
            r.steps[0].skip_if,
            Some(Precheck::Not(Box::new(Precheck::IndexInvalid {
                table: Name::bare("t"),
                index: "t_a_key".into()
            })))
        );
        assert_eq!(r.steps[0].kind, StepKind::DropInvalidIndex);
        assert!(r.steps[1].long_running);
        assert_eq!(r.steps[1].lock, LockMode::ShareUpdateExclusive);
    }

    #[test]
    fn partitioned_index_is_built_partition_by_partition() {
        let parts = [
            Partition::leaf(Name::new(Some("s"), "m_2025")),
            Partition::partitioned(
                Name::new(Some("s"), "m_2026"),
                vec![Partition::leaf(Name::new(Some("s"), "m_2026_q1"))],
            ),
        ];
        let c = Context {
            server_version_num: PG15,
            partitions: Some(&parts),
            partition_of: None,
        };
        let r = plan_with(
            "CREATE INDEX ON s.m USING btree (tenant, lower(email)) WHERE x",
            &c,
        )
        .expect("recipe");
        let sql: Vec<&str> = r.steps.iter().map(|s| s.sql.as_str()).collect();
        assert_eq!(
            sql,
            [
                "CREATE INDEX IF NOT EXISTS m_tenant_lower_idx ON ONLY s.m USING btree (tenant, \
                 lower(email)) WHERE x",
                "DROP INDEX CONCURRENTLY IF EXISTS s.m_2025_tenant_lower_idx",
                "CREATE INDEX CONCURRENTLY IF NOT EXISTS m_2025_tenant_lower_idx ON s.m_2025 \
                 USING btree (tenant, lower(email)) WHERE x",
                "ALTER INDEX s.m_tenant_lower_idx ATTACH PARTITION s.m_2025_tenant_lower_idx",
                "CREATE INDEX IF NOT EXISTS m_2026_tenant_lower_idx ON ONLY s.m_2026 USING \
                 btree (tenant, lower(email)) WHERE x",
                "DROP INDEX CONCURRENTLY IF EXISTS s.m_2026_q1_tenant_lower_idx",
                "CREATE INDEX CONCURRENTLY IF NOT EXISTS m_2026_q1_tenant_lower_idx ON \
                 s.m_2026_q1 USING btree (tenant, lower(email)) WHERE x",
                "ALTER INDEX s.m_2026_tenant_lower_idx ATTACH PARTITION \
                 s.m_2026_q1_tenant_lower_idx",
                "ALTER INDEX s.m_tenant_lower_idx ATTACH PARTITION s.m_2026_tenant_lower_idx",
            ]
        );
        assert_eq!(r.steps[0].lock, LockMode::Share);
        assert_eq!(r.steps[3].kind, StepKind::AttachIndex);
        // A user-given name is used for the parent; partitions still get PostgreSQL's names.
        let r = plan_with("CREATE UNIQUE INDEX \"Idx\" ON s.m (id)", &c).expect("recipe");
        assert_eq!(
            r.steps[0].sql,
            "CREATE UNIQUE INDEX IF NOT EXISTS \"Idx\" ON ONLY s.m (id)"
        );
        assert_eq!(
            r.steps[3].sql,
            "ALTER INDEX s.\"Idx\" ATTACH PARTITION s.m_2025_id_idx"
        );
        // Not partitioned: that is the single-statement CONCURRENTLY rewrite, not a recipe.
        assert!(matches!(
            refused("CREATE INDEX i ON t (x)"),
            RecipeError::NoRecipe(_)
        ));
    }

    #[test]
    fn index_column_names_follow_figure_colname() {
        let names = |cols: &str| {
            let sql = format!("CREATE INDEX ON t ({cols})");
            let st = Stmt::new(sql.as_bytes(), 0, sql.len(), LexOptions::default()).expect("stmt");
            let ci = st.create_index().expect("create index");
            index_column_names(&st, &ci.elements, &ci.include)
        };
        // Verified against PostgreSQL 15: p_v_expr_lower_expr1_k_text_coalesce_v1_idx.
        assert_eq!(
            names(
                "(v::text), (k + 1), lower(v::text), (v::text || 'x'), ((k)), ('a'::text), \
                 coalesce(k, v), v"
            )
            .expect("names"),
            ["v", "expr", "lower", "expr1", "k", "text", "coalesce", "v1"]
        );
        assert_eq!(
            names("x COLLATE \"C\" text_pattern_ops DESC NULLS LAST, s.f(y), (a.b)")
                .expect("names"),
            ["x", "f", "b"]
        );
        assert_eq!(
            names("((k + 1)::bigint), (1::int)").expect("names"),
            ["int8", "int4"]
        );
        // INCLUDE columns count (verified: m_a_id_tenant_idx).
        assert_eq!(
            names("id) INCLUDE (tenant, id").expect("names"),
            ["id", "tenant", "id1"]
        );
        assert!(names("(CASE WHEN a THEN 1 END)").is_err());
        assert!(names("(extract(year FROM ts))").is_err());
    }

    #[test]
    fn generated_index_constraint_names_fit_in_63_bytes() {
        let sql = format!("ALTER TABLE {} ADD UNIQUE (x)", "t".repeat(70));
        let r = steps(&sql);
        assert!(r[2].ends_with(&format!("UNIQUE USING INDEX {}_x_key", "t".repeat(57))));
    }

    #[test]
    fn an_invalid_leftover_is_dropped_concurrently_then_built_again() {
        let plan = |sql: &str| {
            let ddl = crate::sql::parse::understand(
                sql.as_bytes(),
                0,
                sql.len(),
                crate::sql::lexer::LexOptions::default(),
            );
            crate::recipe::plan_rebuild_invalid_index(
                sql.as_bytes(),
                0,
                sql.len(),
                crate::sql::lexer::LexOptions::default(),
                &ddl,
                "app",
                &crate::recipe::tests::ctx(crate::recipe::tests::PG15),
            )
        };
        // (statement, step 2 as it runs)
        let cases = [
            (
                "CREATE INDEX IF NOT EXISTS inv_x ON inv (x)",
                "CREATE INDEX CONCURRENTLY IF NOT EXISTS inv_x ON inv (x)",
            ),
            (
                "create unique index concurrently if not exists \"Inv X\" on s.inv using btree (lower(x)) include (y) where x <> ''",
                "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS \"Inv X\" ON s.inv using btree (lower(x)) include (y) where x <> ''",
            ),
        ];
        for (sql, create) in cases {
            let r = plan(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
            assert_eq!(r.kind, RecipeKind::RebuildInvalidIndex);
            assert_eq!(r.kind.command_tag(), "CREATE INDEX");
            let index = if sql.contains("Inv X") {
                "Inv X"
            } else {
                "inv_x"
            };
            assert_eq!(r.steps.len(), 2, "{sql}");
            assert_eq!(r.steps[0].kind, StepKind::DropInvalidIndex);
            assert_eq!(
                r.steps[0].sql,
                format!(
                    "DROP INDEX CONCURRENTLY IF EXISTS app.{}",
                    quote::ident_if_needed(index)
                )
            );
            // Run only while the catalog still shows the leftover INVALID on that table.
            assert_eq!(
                r.steps[0].skip_if,
                Some(Precheck::Not(Box::new(Precheck::IndexInvalid {
                    table: Name::new(Some("app"), "inv"),
                    index: index.to_owned(),
                })))
            );
            assert_eq!(r.steps[1].kind, StepKind::CreateIndexConcurrently);
            assert_eq!(r.steps[1].sql, create);
            assert!(
                r.steps
                    .iter()
                    .all(|s| s.lock == LockMode::ShareUpdateExclusive)
            );
            let text = r.describe();
            assert!(text.contains("as 2 steps"), "{text}");
        }
        // Not the shape it is for: refused, never guessed.
        for sql in [
            "CREATE INDEX inv_x ON inv (x)",
            "CREATE INDEX IF NOT EXISTS ON inv (x)",
            "CREATE INDEX IF NOT EXISTS inv_x ON ONLY inv (x)",
            "ALTER TABLE inv ADD CHECK (x > 0)",
        ] {
            assert!(plan(sql).is_err(), "{sql}");
        }
    }
}

//! Which migration tool drives a session, so a refusal can name that tool's own way out.
//!
//! Most tools print only an error's message, never its DETAIL or HINT (sqlx-cli, diesel_cli:
//! `tests/e2e`), so a hint listing every tool's switch never reaches their users. ddlgate knows
//! the tool the way an operator would: by the version table it reads and writes before it runs
//! anything (`_sqlx_migrations`, `__diesel_schema_migrations`, …), or by `application_name`
//! (psql). Only names that belong to one tool count (`schema_migrations` is shared by Rails,
//! golang-migrate and dbmate, so it names none). Only the first statements of a session are
//! looked at, with one pass over the bytes each: tools read their version table before migrating.
//!
//! Nothing is decided on this: it only picks the words of a message. A client that pretends
//! to be another tool gets another tool's advice, nothing more.

/// A migration tool ddlgate can name in its messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    Psql,
    Sqlx,
    Diesel,
    Alembic,
    Django,
    Knex,
    NodePgMigrate,
    Flyway,
    Liquibase,
    Rails,
    Prisma,
}

/// Statements of a session searched for a version table before ddlgate stops looking.
pub const STATEMENTS_SEARCHED: u32 = 64;

/// Version tables that belong to one tool, lower case as the tools create them.
const VERSION_TABLES: &[(&[u8], Tool)] = &[
    (b"_sqlx_migrations", Tool::Sqlx),
    (b"__diesel_schema_migrations", Tool::Diesel),
    (b"alembic_version", Tool::Alembic),
    (b"django_migrations", Tool::Django),
    (b"knex_migrations", Tool::Knex),
    (b"pgmigrations", Tool::NodePgMigrate),
    (b"flyway_schema_history", Tool::Flyway),
    (b"databasechangelog", Tool::Liquibase),
    // Liquibase writes its table names in upper case.
    (b"DATABASECHANGELOG", Tool::Liquibase),
    (b"ar_internal_metadata", Tool::Rails),
    (b"_prisma_migrations", Tool::Prisma),
];

/// [`VERSION_TABLES`]' names as one automaton, built once.
static VERSION_TABLE_SEARCH: std::sync::LazyLock<aho_corasick::AhoCorasick> =
    std::sync::LazyLock::new(|| {
        aho_corasick::AhoCorasick::new(VERSION_TABLES.iter().map(|&(table, _)| table))
            .expect("a dozen short literal names are far below the automaton's limits")
    });

impl Tool {
    /// The tool named by `application_name`, when it names one.
    pub fn from_application_name(name: &str) -> Option<Tool> {
        (name == "psql").then_some(Tool::Psql)
    }

    /// The tool whose version table `sql` names, if any, spelled as the tools write it; when
    /// it names several, the first in the list of version tables. One pass over the bytes for
    /// all the names, no allocation: the first statements of every session are searched, so a
    /// client that connects per request pays for this on nearly every query.
    pub fn from_sql(sql: &[u8]) -> Option<Tool> {
        VERSION_TABLE_SEARCH
            .find_overlapping_iter(sql)
            .map(|m| m.pattern().as_usize())
            .min()
            .and_then(|i| VERSION_TABLES.get(i))
            .map(|&(_, tool)| tool)
    }

    pub fn name(self) -> &'static str {
        match self {
            Tool::Psql => "psql",
            Tool::Sqlx => "sqlx",
            Tool::Diesel => "diesel",
            Tool::Alembic => "Alembic",
            Tool::Django => "Django",
            Tool::Knex => "knex",
            Tool::NodePgMigrate => "node-pg-migrate",
            Tool::Flyway => "Flyway",
            Tool::Liquibase => "Liquibase",
            Tool::Rails => "Rails",
            Tool::Prisma => "Prisma",
        }
    }

    /// How this tool runs one migration outside a transaction (README, "Using ddlgate with
    /// your migration tool").
    pub fn outside_transaction(self) -> &'static str {
        match self {
            Tool::Psql => {
                "run it after COMMIT, not in a file run with `-1`, and not in a `-c` string with other statements"
            }
            Tool::Sqlx => {
                "put `-- no-transaction` as the first line of a migration holding only this statement"
            }
            Tool::Diesel => {
                "give the migration a `metadata.toml` with `run_in_transaction = false`, and only this statement in its `up.sql`"
            }
            Tool::Alembic => {
                "run it inside `with op.get_context().autocommit_block():`, with `transaction_per_migration=True` in env.py"
            }
            Tool::Django => "set `atomic = False` on the migration",
            Tool::Knex => "add `exports.config = { transaction: false };` to the migration",
            Tool::NodePgMigrate => "call `pgm.noTransaction()` in the migration",
            Tool::Flyway => "give the script a `.conf` with `executeInTransaction=false`",
            Tool::Liquibase => "set `runInTransaction:false` on the changeset",
            Tool::Rails => "call `disable_ddl_transaction!` in the migration",
            Tool::Prisma => "put the statement alone in its own `migration.sql`",
        }
    }

    /// Whether the tool shows an error's HINT to its user; when it does not, the message
    /// itself carries the override. Seen in tests/e2e: psql, node-pg-migrate, and Alembic and
    /// Django through psycopg (whose exception text holds DETAIL and HINT) show it; sqlx-cli,
    /// diesel_cli and knex print the message alone. Tools not seen are assumed not to.
    pub fn shows_hint(self) -> bool {
        matches!(
            self,
            Tool::Psql | Tool::Alembic | Tool::Django | Tool::NodePgMigrate
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tools_are_named_by_their_version_tables() {
        assert_eq!(
            Tool::from_sql(b"SELECT version, checksum FROM _sqlx_migrations ORDER BY version"),
            Some(Tool::Sqlx)
        );
        assert_eq!(
            Tool::from_sql(b"SELECT * FROM DATABASECHANGELOG"),
            Some(Tool::Liquibase)
        );
        assert_eq!(
            Tool::from_sql(b"select * from \"knex_migrations\""),
            Some(Tool::Knex)
        );
        // Shared by several tools: names none.
        assert_eq!(
            Tool::from_sql(b"SELECT version FROM schema_migrations"),
            None
        );
        assert_eq!(Tool::from_sql(b"SELECT 1"), None);
        assert_eq!(Tool::from_application_name("psql"), Some(Tool::Psql));
        assert_eq!(Tool::from_application_name("app"), None);
        // Two tools' tables: the first of the list wins, wherever it stands.
        assert_eq!(
            Tool::from_sql(b"SELECT * FROM _prisma_migrations, _sqlx_migrations"),
            Some(Tool::Sqlx)
        );
        // One name inside another (`pgmigrations` in `pgmigrations_lock`) still counts.
        assert_eq!(
            Tool::from_sql(b"LOCK TABLE pgmigrations_lock"),
            Some(Tool::NodePgMigrate)
        );
    }

    /// The search as it was: one substring search per name, in the list's order.
    fn by_each_name(sql: &[u8]) -> Option<Tool> {
        VERSION_TABLES
            .iter()
            .find(|(table, _)| memchr::memmem::find(sql, table).is_some())
            .map(|&(_, tool)| tool)
    }

    proptest::proptest! {
        #[test]
        fn one_pass_finds_what_a_search_per_name_finds(
            parts in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::sample::select(
                        VERSION_TABLES.iter().map(|&(t, _)| t.to_vec()).collect::<Vec<_>>()
                    ),
                    proptest::collection::vec(proptest::num::u8::ANY, 0..12),
                    proptest::sample::select(
                        [&b"_"[..], b"migrations", b"SELECT * FROM ", b"changelog"]
                            .map(<[u8]>::to_vec)
                            .to_vec()
                    ),
                ],
                0..6,
            )
        ) {
            let sql = parts.concat();
            proptest::prop_assert_eq!(Tool::from_sql(&sql), by_each_name(&sql));
        }
    }
}

//! How each migration tool runs a file, so `ddlgate check` judges a statement in the context it
//! will really run in: inside the tool's transaction, alone, or as part of one multi-statement
//! Query (which PostgreSQL runs as one implicit transaction).
//!
//! | tool | default | per-file opt-out | without a transaction |
//! |---|---|---|---|
//! | sqlx | one transaction | first line `-- no-transaction` | whole file as one Query |
//! | diesel | one transaction | `metadata.toml` beside `up.sql`: `run_in_transaction = false` | one Query |
//! | dbmate | one transaction per section | `-- migrate:up transaction:false` (and `down`) | one Query |
//! | golang-migrate | none of its own | — | whole file as one Query |
//! | flyway | one transaction, unless a statement needs none (below) | `<script>.conf`: `executeInTransaction=false` | statement by statement |
//! | psql | none (`-f`) | — | statement by statement |
//! | psql-1 | one transaction (`-1 -f`) | — | — |
//!
//! Flyway (9 and later) also decides by itself: a script with a statement its
//! `PostgreSQLParser.detectCanExecuteInTransaction` says cannot run in a transaction runs
//! outside one, statement by statement, unless its `.conf` sets `executeInTransaction`
//! explicitly ([`flyway_needs_no_transaction`]).
//!
//! Without `--tool`, a file is read as the tool its layout names without doubt (a `up.sql`
//! or `down.sql` in a numbered directory: diesel; a `-- migrate:up` line: dbmate; a
//! `V1__x.sql`, `U1__x.sql` or `R__x.sql` name: flyway; a first line `-- no-transaction`:
//! sqlx); any other file as `--assume-in-transaction` says (psql `-1` or psql).

use std::path::Path;

use super::{RunMode, Unit};
use crate::sql::lexer::{self, LexOptions, Lexer, TokenKind};

/// The migration tool that runs the files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Tool {
    /// Each file as its layout says when unambiguous, else as `--assume-in-transaction` says.
    Auto,
    Sqlx,
    Diesel,
    Dbmate,
    GolangMigrate,
    Flyway,
    /// `psql -f`: statement by statement, no transaction but the file's own.
    Psql,
    /// `psql -1 -f`: the whole file in one transaction.
    #[value(name = "psql-1")]
    Psql1,
}

impl Tool {
    pub fn name(self) -> &'static str {
        match self {
            Tool::Auto => "auto",
            Tool::Sqlx => "sqlx",
            Tool::Diesel => "diesel",
            Tool::Dbmate => "dbmate",
            Tool::GolangMigrate => "golang-migrate",
            Tool::Flyway => "flyway",
            Tool::Psql => "psql",
            Tool::Psql1 => "psql-1",
        }
    }
}

/// The tool that runs `path` (for [`Tool::Auto`], the one its layout names, or psql / psql-1
/// by `assume_in_transaction`), and the units it runs the file in. Errors name a tool file
/// (diesel's `metadata.toml`, flyway's `.conf`) that cannot be read or understood: a check
/// that guessed would be wrong with certainty somewhere.
pub fn plan(
    tool: Tool,
    path: Option<&Path>,
    source: &[u8],
    assume_in_transaction: bool,
    pg_version: Option<u32>,
) -> Result<(Tool, Vec<Unit>), String> {
    let tool = match tool {
        Tool::Auto => detect(path, source).unwrap_or(if assume_in_transaction {
            Tool::Psql1
        } else {
            Tool::Psql
        }),
        other => other,
    };
    let whole = |mode| {
        vec![Unit {
            range: 0..source.len(),
            mode,
        }]
    };
    let in_tx = |yes: bool, without: RunMode| {
        whole(if yes {
            RunMode::OneTransaction
        } else {
            without
        })
    };
    let units = match tool {
        Tool::Sqlx => in_tx(!source.starts_with(b"-- no-transaction"), RunMode::OneQuery),
        Tool::Diesel => in_tx(diesel_in_transaction(path)?, RunMode::OneQuery),
        Tool::Dbmate => dbmate_units(source),
        Tool::GolangMigrate => whole(RunMode::OneQuery),
        Tool::Flyway => in_tx(
            flyway_in_transaction(path)?
                .unwrap_or_else(|| !flyway_needs_no_transaction(source, pg_version)),
            RunMode::Statements,
        ),
        Tool::Psql | Tool::Auto => whole(RunMode::Statements),
        Tool::Psql1 => whole(RunMode::OneTransaction),
    };
    Ok((tool, units))
}

/// The tool `path` and `source` name without doubt, if any.
pub fn detect(path: Option<&Path>, source: &[u8]) -> Option<Tool> {
    let file_name = path
        .and_then(Path::file_name)
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let parent_numbered = path
        .and_then(Path::parent)
        .and_then(Path::file_name)
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with(|c: char| c.is_ascii_digit()));
    if (file_name == "up.sql" || file_name == "down.sql") && parent_numbered {
        return Some(Tool::Diesel);
    }
    if !dbmate_markers(source).is_empty() {
        return Some(Tool::Dbmate);
    }
    if is_flyway_name(file_name) {
        return Some(Tool::Flyway);
    }
    if source.starts_with(b"-- no-transaction") {
        return Some(Tool::Sqlx);
    }
    None
}

/// `V1__x.sql`, `V1.2_3__x.sql`, `U1__x.sql`, `R__x.sql`: Flyway's default prefixes and `__`.
fn is_flyway_name(name: &str) -> bool {
    let Some(stem) = name.strip_suffix(".sql") else {
        return false;
    };
    let Some((head, desc)) = stem.split_once("__") else {
        return false;
    };
    if desc.is_empty() {
        return false;
    }
    match head.as_bytes().split_first() {
        Some((b'R', rest)) => rest.is_empty(),
        Some((b'V' | b'U', rest)) => {
            !rest.is_empty()
                && rest.first().is_some_and(u8::is_ascii_digit)
                && rest
                    .iter()
                    .all(|c| c.is_ascii_digit() || *c == b'.' || *c == b'_')
        }
        _ => false,
    }
}

/// diesel: `run_in_transaction = false` in `metadata.toml` beside the file; absent file or key:
/// in a transaction.
fn diesel_in_transaction(path: Option<&Path>) -> Result<bool, String> {
    let Some(meta) = path.and_then(Path::parent).map(|d| d.join("metadata.toml")) else {
        return Ok(true);
    };
    let text = match std::fs::read_to_string(&meta) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(true),
        Err(e) => return Err(format!("{}: {e}", meta.display())),
    };
    match setting(&text, "run_in_transaction", '#') {
        Ok(v) => Ok(v.unwrap_or(true)),
        Err(e) => Err(format!("{}: {e}", meta.display())),
    }
}

/// flyway: `executeInTransaction` in the script configuration file `<script>.conf`, when set
/// there; `None` (absent file or key) leaves the choice to Flyway's own detection.
fn flyway_in_transaction(path: Option<&Path>) -> Result<Option<bool>, String> {
    let Some(path) = path else { return Ok(None) };
    let mut conf = path.as_os_str().to_owned();
    conf.push(".conf");
    let conf = Path::new(&conf);
    let text = match std::fs::read_to_string(conf) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", conf.display())),
    };
    setting(&text, "executeInTransaction", '#').map_err(|e| format!("{}: {e}", conf.display()))
}

/// Flyway's automatic non-transactional mode for PostgreSQL: a statement of the script is one
/// `PostgreSQLParser.detectCanExecuteInTransaction` (flyway/flyway,
/// `flyway-database-postgresql/…/PostgreSQLParser.java`, the same list since Flyway 9) says
/// cannot run in a transaction. Flyway matches its patterns against the statement's leading
/// keywords outside parentheses, one more keyword at a time:
///
/// - `CREATE|DROP DATABASE|TABLESPACE|SUBSCRIPTION`, `ALTER SYSTEM`
/// - `CREATE|DROP [UNIQUE] INDEX CONCURRENTLY`
/// - `REINDEX [VERBOSE] SCHEMA|DATABASE|SYSTEM` — not `REINDEX INDEX|TABLE … CONCURRENTLY`,
///   which Flyway leaves in the transaction (where PostgreSQL refuses it)
/// - `VACUUM`, `DISCARD ALL`
/// - `ALTER TYPE … ADD VALUE` when the server is older than 12 (`pg_version`; unknown counts
///   as recent, as everywhere in `check`).
///
/// Flyway stops looking after ten keywords; every pattern is decided well before that.
pub fn flyway_needs_no_transaction(source: &[u8], pg_version: Option<u32>) -> bool {
    let lex = LexOptions::default();
    let mut found = false;
    lexer::each_statement(source, lex, |span| {
        if found || span.is_empty() {
            return;
        }
        let mut depth = 0usize;
        let mut words: Vec<String> = Vec::new();
        for t in Lexer::at(source, span.start, lex).take_while(|t| t.start < span.end) {
            match t.kind {
                TokenKind::LParen => depth += 1,
                TokenKind::RParen => depth = depth.saturating_sub(1),
                TokenKind::Word if depth == 0 => {
                    words.push(String::from_utf8_lossy(t.text(source)).to_ascii_uppercase());
                    if words.len() >= 10 {
                        break;
                    }
                }
                _ => {}
            }
        }
        found = flyway_non_transactional(&words, pg_version);
    });
    found
}

fn flyway_non_transactional(words: &[String], pg_version: Option<u32>) -> bool {
    let w: Vec<&str> = words.iter().map(String::as_str).collect();
    let starts = |prefix: &[&str]| w.starts_with(prefix);
    match w.as_slice() {
        [
            "CREATE" | "DROP",
            "DATABASE" | "TABLESPACE" | "SUBSCRIPTION",
            ..,
        ]
        | ["ALTER", "SYSTEM", ..]
        | ["CREATE" | "DROP", "INDEX", "CONCURRENTLY", ..]
        | ["CREATE" | "DROP", "UNIQUE", "INDEX", "CONCURRENTLY", ..]
        | ["REINDEX", "SCHEMA" | "DATABASE" | "SYSTEM", ..]
        | ["REINDEX", "VERBOSE", "SCHEMA" | "DATABASE" | "SYSTEM", ..]
        | ["VACUUM", ..]
        | ["DISCARD", "ALL", ..] => true,
        _ => {
            pg_version.is_some_and(|v| v < 12)
                && starts(&["ALTER", "TYPE"])
                && w.windows(2).any(|p| p == ["ADD", "VALUE"])
        }
    }
}

/// The boolean `key = true|false` in a `key = value` file (TOML or Java properties as these
/// tools write them); anything else for that key is an error, not a guess.
fn setting(text: &str, key: &str, comment: char) -> Result<Option<bool>, String> {
    let mut found = None;
    for line in text.lines() {
        let line = line.split(comment).next().unwrap_or_default().trim();
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        if k.trim() != key {
            continue;
        }
        found = Some(match v.trim().trim_matches('"') {
            "true" => true,
            "false" => false,
            other => return Err(format!("`{key}` must be true or false, not `{other}`")),
        });
    }
    Ok(found)
}

/// dbmate's section markers: (offset of the line, runs in a transaction).
fn dbmate_markers(source: &[u8]) -> Vec<(usize, bool)> {
    let mut out = Vec::new();
    let mut start = 0;
    for line in source.split(|&b| b == b'\n') {
        let rest = line
            .strip_prefix(b"--")
            .map(|r| r.trim_ascii_start())
            .and_then(|r| {
                r.strip_prefix(b"migrate:up")
                    .or_else(|| r.strip_prefix(b"migrate:down"))
            });
        if let Some(options) = rest {
            let no_tx = options
                .split(|b| b.is_ascii_whitespace())
                .any(|o| o == b"transaction:false");
            out.push((start, !no_tx));
        }
        start += line.len() + 1;
    }
    out
}

/// dbmate runs the up and the down section each on its own, in a transaction unless its marker
/// says `transaction:false`; what precedes the first marker belongs to the first section.
fn dbmate_units(source: &[u8]) -> Vec<Unit> {
    let markers = dbmate_markers(source);
    if markers.is_empty() {
        return vec![Unit {
            range: 0..source.len(),
            mode: RunMode::OneTransaction,
        }];
    }
    let mut units = Vec::with_capacity(markers.len());
    for (i, &(_, in_tx)) in markers.iter().enumerate() {
        let start = if i == 0 { 0 } else { markers[i].0 };
        let end = markers.get(i + 1).map_or(source.len(), |m| m.0);
        units.push(Unit {
            range: start..end,
            mode: if in_tx {
                RunMode::OneTransaction
            } else {
                RunMode::OneQuery
            },
        });
    }
    units
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_only_unambiguous_layouts() {
        let p = |s: &str| Some(Path::new(s).to_path_buf());
        let d = |path: &str, src: &str| detect(p(path).as_deref(), src.as_bytes());
        assert_eq!(d("m/2024-01-01-000000_x/up.sql", ""), Some(Tool::Diesel));
        assert_eq!(d("m/x/up.sql", ""), None);
        assert_eq!(
            d("m/1_x.sql", "-- migrate:up\nSELECT 1;"),
            Some(Tool::Dbmate)
        );
        assert_eq!(d("m/V1.2__init.sql", ""), Some(Tool::Flyway));
        assert_eq!(d("m/R__views.sql", ""), Some(Tool::Flyway));
        assert_eq!(d("m/V__x.sql", ""), None);
        assert_eq!(d("m/1_x.sql", "-- no-transaction\n"), Some(Tool::Sqlx));
        // sqlx, golang-migrate and plain files share `<version>_<name>[.up].sql`: not guessed.
        assert_eq!(d("m/001_x.sql", "SELECT 1;"), None);
        assert_eq!(d("m/001_x.up.sql", "SELECT 1;"), None);
    }

    #[test]
    fn dbmate_sections_and_settings() {
        let src = b"-- migrate:up transaction:false\nCREATE INDEX CONCURRENTLY i ON t (x);\n-- migrate:down\nDROP INDEX i;\n";
        let units = dbmate_units(src);
        assert_eq!(units.len(), 2);
        assert_eq!(units[0].mode, RunMode::OneQuery);
        assert_eq!(units[1].mode, RunMode::OneTransaction);
        assert_eq!(units[0].range.end, units[1].range.start);
        assert!(src[units[1].range.clone()].starts_with(b"-- migrate:down"));
        assert_eq!(
            setting("run_in_transaction = false # no", "run_in_transaction", '#'),
            Ok(Some(false))
        );
        assert!(setting("executeInTransaction=maybe", "executeInTransaction", '#').is_err());
    }

    #[test]
    fn flyway_runs_scripts_it_detects_as_non_transactional_statement_by_statement() {
        let yes = |sql: &str| flyway_needs_no_transaction(sql.as_bytes(), None);
        for sql in [
            "CREATE INDEX CONCURRENTLY i ON t (x);",
            "create table t (id int);\n-- then\ncreate unique index concurrently i on t (id);",
            "DROP INDEX CONCURRENTLY IF EXISTS i;",
            "VACUUM ANALYZE t;",
            "vacuum;",
            "REINDEX SCHEMA public;",
            "REINDEX (VERBOSE) DATABASE d;",
            "REINDEX VERBOSE SYSTEM d;",
            "DISCARD ALL;",
            "ALTER SYSTEM SET work_mem = '8MB';",
            "CREATE DATABASE d;",
            "DROP SUBSCRIPTION s;",
            "/* c */ CREATE INDEX CONCURRENTLY i ON t (x);",
        ] {
            assert!(yes(sql), "{sql}");
        }
        for sql in [
            "CREATE INDEX i ON t (x);",
            // Flyway does not detect these: they stay in its transaction.
            "REINDEX TABLE CONCURRENTLY t;",
            "REINDEX INDEX CONCURRENTLY i;",
            "ALTER TYPE mood ADD VALUE 'x';",
            // Only the leading keywords count, outside parentheses, strings and comments.
            "SELECT 'CREATE INDEX CONCURRENTLY';",
            "-- VACUUM\nSELECT 1;",
            "DO $$ BEGIN EXECUTE 'VACUUM'; END $$;",
            "CREATE TABLE vacuum (id int);",
            "CREATE \"INDEX\" CONCURRENTLY;",
        ] {
            assert!(!yes(sql), "{sql}");
        }
        // ALTER TYPE … ADD VALUE before PostgreSQL 12.
        assert!(flyway_needs_no_transaction(
            b"ALTER TYPE mood ADD VALUE 'x';",
            Some(11)
        ));
        assert!(!flyway_needs_no_transaction(
            b"ALTER TYPE mood ADD VALUE 'x';",
            Some(12)
        ));

        let src = b"CREATE TABLE t (id int);\nCREATE INDEX CONCURRENTLY i ON t (id);\n";
        let (tool, units) = plan(Tool::Flyway, None, src, false, None).expect("plan");
        assert_eq!(tool, Tool::Flyway);
        assert_eq!(units[0].mode, RunMode::Statements);
        let (_, units) =
            plan(Tool::Flyway, None, b"CREATE INDEX i ON t (x);", false, None).expect("plan");
        assert_eq!(units[0].mode, RunMode::OneTransaction);
    }
}

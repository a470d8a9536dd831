//! `ddlgate check`: the proxy's engine run over migration files, for CI.
//!
//! Each file is split into statements exactly as the proxy splits a Query, each DDL candidate
//! is understood and checked by the same rules and policy. The context is simulated the way a
//! migration runs: a file is cut into units ([`Unit`]) each run as its tool runs it
//! ([`RunMode`]: statement by statement as psql `-f`, in one transaction, or as one
//! multi-statement Query; [`tool`] reads each tool's per-file opt-outs), `BEGIN`/`COMMIT` in the
//! file open and close a transaction, tables created inside a transaction are exempt from lock
//! rules until it ends, and `--pg-version` sets the server version. One pass over each file:
//! the cost is linear in its size.
//!
//! The exit status is non-zero when anything would be blocked; statements the proxy would
//! rewrite are reported but do not fail the check.

use std::collections::HashSet;
use std::io::Write;

use serde::Serialize;

use crate::analysis;
use crate::policy::Profile;
use crate::protocol::TxStatus;
use crate::rules::Action;
use crate::sql::lexer::{self, LexOptions};
use crate::sql::prefilter::StatementClass;
use crate::sql::statement::Name;

pub mod tool;

/// How to present results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// `file:line:col: action rule: message` plus the hint.
    Text,
    /// One JSON document with every finding.
    Json,
    /// GitHub Actions workflow commands (annotations on the pull request).
    Github,
}

#[derive(Debug, Clone)]
pub struct Options {
    /// Server major version (e.g. 15); unknown means "recent".
    pub pg_version: Option<u32>,
    pub assume_in_transaction: bool,
}

/// One finding in one statement, as reported.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Reported {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub statement: String,
    pub rule: String,
    /// What the proxy would do: allow (overridden), warn, rewrite or block.
    pub action: String,
    pub message: String,
    pub hint: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub override_reason: Option<String>,
}

/// How a migration tool hands one unit (a file, or a section of one) to the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunMode {
    /// Statement by statement with no transaction of its own (psql `-f`, Flyway without a
    /// transaction): only `BEGIN`/`COMMIT` in the file open and close one.
    Statements,
    /// Wrapped in one transaction (psql `-1`, and most tools' default).
    OneTransaction,
    /// The whole unit sent as one simple Query (sqlx, diesel and dbmate outside a
    /// transaction, golang-migrate): PostgreSQL runs several statements of one Query in one
    /// implicit transaction, exactly as the proxy sees a multi-statement Query.
    OneQuery,
}

/// A byte range of a file and how the tool runs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unit {
    pub range: std::ops::Range<usize>,
    pub mode: RunMode,
}

/// Checks one file's contents, as one unit run as `opts` says.
pub fn check_source(file: &str, source: &[u8], opts: &Options, profile: &Profile) -> Vec<Reported> {
    let mode = if opts.assume_in_transaction {
        RunMode::OneTransaction
    } else {
        RunMode::Statements
    };
    check_units(
        file,
        source,
        &[Unit {
            range: 0..source.len(),
            mode,
        }],
        opts,
        profile,
    )
}

/// Checks the `units` of one file's contents (in file order), each run as its mode says.
///
/// One pass over the file: statements are split once, positions advance with the statements
/// (never recounted from the start of the file), so the cost is linear in the file's size.
pub fn check_units(
    file: &str,
    source: &[u8],
    units: &[Unit],
    opts: &Options,
    profile: &Profile,
) -> Vec<Reported> {
    let mut positions = Positions::default();
    let mut out = Vec::new();
    for unit in units {
        let Some(text) = source.get(unit.range.clone()) else {
            continue;
        };
        check_unit(
            file,
            source,
            text,
            unit.range.start,
            unit.mode,
            opts,
            profile,
            &mut positions,
            &mut out,
        );
    }
    out
}

/// Checks one unit with the proxy's own two calls, `analysis::prepare` and
/// `analysis::decide`, each statement as the tool sends it: one message per statement
/// ([`RunMode::Statements`], [`RunMode::OneTransaction`]) or the whole unit as one Query
/// ([`RunMode::OneQuery`]). Offline there are no catalog facts, and tables count as created
/// in the transaction by name (`analysis::Created::Offline`).
#[allow(clippy::too_many_arguments)]
fn check_unit(
    file: &str,
    whole: &[u8],
    source: &[u8],
    base: usize,
    mode: RunMode,
    opts: &Options,
    profile: &Profile,
    positions: &mut Positions,
    out: &mut Vec<Reported>,
) {
    let lex = LexOptions::default();
    let base_tx = if mode == RunMode::OneTransaction {
        TxStatus::InTransaction
    } else {
        TxStatus::Idle
    };
    let ctx = |tx| analysis::Context {
        tx,
        lex,
        // Unknown means recent: the newest server the rules and recipes know.
        server_version: Some(opts.pg_version.map_or(crate::recipe::PG18, |v| v * 10_000)),
        pipelined: false,
        tool: None,
    };
    let mut created: HashSet<Name> = HashSet::new();
    let mut added = Vec::new();
    let prepared = analysis::prepare(source, lex, usize::MAX);
    if mode == RunMode::OneQuery {
        let decided = analysis::decide(
            &prepared,
            source,
            analysis::Facts::default(),
            &ctx(base_tx),
            profile,
            analysis::Source::Query,
            analysis::Created::Offline(&mut created, &mut added),
        );
        report(file, whole, source, base, &decided, positions, out);
        return;
    }
    let mut tx = base_tx;
    // DDL statements since the transaction began: only the first `rules::LATER_STATEMENTS`
    // search what follows them, as in the proxy's messages, so the check stays linear.
    let mut ddl_in_tx = 0usize;
    for (i, (span, &class)) in prepared.spans.iter().zip(&prepared.classes).enumerate() {
        let Some(first) = span.first else { continue };
        match class {
            StatementClass::Transaction => {
                ddl_in_tx = 0;
                let word = String::from_utf8_lossy(first.text(source)).to_ascii_uppercase();
                match word.as_str() {
                    "BEGIN" | "START" => tx = TxStatus::InTransaction,
                    "COMMIT" | "END" | "ROLLBACK" | "ABORT" => {
                        tx = if word == "ROLLBACK" && is_rollback_to(source, span) {
                            tx
                        } else {
                            base_tx
                        };
                        if tx == TxStatus::Idle || word != "ROLLBACK" {
                            created.clear();
                            added.clear();
                        }
                    }
                    _ => {}
                }
                continue;
            }
            StatementClass::DdlCandidate => {}
            _ => continue,
        }
        // The statement alone, as the tool sends it: its own message, prepared and decided
        // as the proxy prepares and decides a Query. In a transaction, the text after it up to
        // the end of that transaction runs in it too (what `rules::Context::later` searches).
        ddl_in_tx += 1;
        let end = if tx == TxStatus::Idle || ddl_in_tx > crate::rules::LATER_STATEMENTS {
            span.end
        } else {
            transaction_end(source, &prepared, i)
                .min(span.end.saturating_add(crate::rules::LATER_WINDOW))
        };
        let text = &source[..end];
        let one = prepared.single(i);
        let decided = analysis::decide(
            &one,
            text,
            analysis::Facts::default(),
            &ctx(tx),
            profile,
            analysis::Source::Query,
            analysis::Created::Offline(&mut created, &mut added),
        );
        report(file, whole, source, base, &decided, positions, out);
    }
}

/// Where the transaction open at statement `i` ends in `source`: the start of the next
/// COMMIT / END / ROLLBACK / ABORT (not ROLLBACK TO), or the end of the unit.
pub(crate) fn transaction_end(source: &[u8], prepared: &analysis::Prepared, i: usize) -> usize {
    prepared
        .spans
        .iter()
        .zip(&prepared.classes)
        .skip(i + 1)
        .find(|(span, class)| {
            **class == StatementClass::Transaction
                && span.first.is_some_and(|first| {
                    let word = String::from_utf8_lossy(first.text(source)).to_ascii_uppercase();
                    matches!(word.as_str(), "COMMIT" | "END" | "ABORT")
                        || (word == "ROLLBACK" && !is_rollback_to(source, span))
                })
        })
        .map_or(source.len(), |(span, _)| span.start)
}

/// The findings of one decided message, as reported.
fn report(
    file: &str,
    whole: &[u8],
    source: &[u8],
    base: usize,
    decided: &analysis::Decided,
    positions: &mut Positions,
    out: &mut Vec<Reported>,
) {
    for d in &decided.decisions {
        let Some(first) = d.span.first else { continue };
        let decision = &d.decision;
        let (line, column) = positions.at(whole, base + first.start);
        let statement = statement_excerpt(&source[first.start..d.span.end]);
        if let Some(error) = &decision.error {
            out.push(Reported {
                file: file.to_owned(),
                line,
                column,
                statement: statement.clone(),
                rule: "invalid-override".to_owned(),
                action: Action::Block.as_str().to_owned(),
                message: error.to_string(),
                hint:
                    "Fix the ddlgate:allow comment: name existing rule ids and give reason=\"…\"."
                        .to_owned(),
                override_reason: None,
            });
        }
        // A rewrite the proxy cannot carry out (no insertion point, steps it cannot name) is
        // a block there: the same call decided it here.
        for v in &decision.verdicts {
            let (action, message) = match &d.refused {
                Some(why) if v.action == Action::Rewrite => {
                    (Action::Block, format!("{} {why}", v.finding.message))
                }
                _ => (v.action, v.finding.message.clone()),
            };
            out.push(Reported {
                file: file.to_owned(),
                line,
                column,
                statement: statement.clone(),
                rule: v.finding.rule.to_owned(),
                action: action.as_str().to_owned(),
                message,
                hint: v.finding.hint.clone(),
                override_reason: v.overridden.clone(),
            });
        }
    }
}

/// Line and column of offsets asked for in increasing order, counted incrementally: the
/// newlines between the previous offset and this one, never those from the start of the file
/// again (that made a file of many findings quadratic).
#[derive(Debug, Default)]
pub(crate) struct Positions {
    offset: usize,
    line: usize,
    line_start: usize,
}

impl Positions {
    pub(crate) fn at(&mut self, source: &[u8], offset: usize) -> (usize, usize) {
        let offset = offset.min(source.len());
        if offset < self.offset {
            // Not expected (callers go forward); recount rather than report a wrong place.
            *self = Positions::default();
        }
        for (i, &b) in source[self.offset..offset].iter().enumerate() {
            if b == b'\n' {
                self.line += 1;
                self.line_start = self.offset + i + 1;
            }
        }
        self.offset = offset;
        (self.line + 1, offset - self.line_start + 1)
    }
}

pub(crate) fn is_rollback_to(source: &[u8], span: &lexer::StatementSpan) -> bool {
    lexer::Lexer::at(source, span.start, LexOptions::default())
        .take_while(|t| t.start < span.end)
        .filter(|t| !t.is_comment())
        .nth(1)
        .is_some_and(|t| t.is_word(source, "TO"))
}

pub(crate) fn statement_excerpt(text: &[u8]) -> String {
    let s = String::from_utf8_lossy(text);
    let flat: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() > 120 {
        format!("{}…", flat.chars().take(120).collect::<String>())
    } else {
        flat
    }
}

/// Whether the reports contain anything the proxy would block.
pub fn fails(reports: &[Reported]) -> bool {
    reports.iter().any(|r| r.action == Action::Block.as_str())
}

/// Writes the reports in `format`.
pub fn render(reports: &[Reported], format: Format, out: &mut impl Write) -> std::io::Result<()> {
    match format {
        Format::Json => {
            let doc = serde_json::json!({ "findings": reports, "blocked": fails(reports) });
            writeln!(
                out,
                "{}",
                serde_json::to_string_pretty(&doc).unwrap_or_else(|_| "{}".to_owned())
            )
        }
        Format::Text => {
            for r in reports {
                writeln!(
                    out,
                    "{}:{}:{}: {} {}: {}",
                    r.file, r.line, r.column, r.action, r.rule, r.message
                )?;
                writeln!(out, "    statement: {}", r.statement)?;
                match &r.override_reason {
                    Some(reason) => writeln!(out, "    allowed by override: {reason}")?,
                    None => writeln!(out, "    hint: {}", r.hint)?,
                }
            }
            let blocked = reports.iter().filter(|r| r.action == "block").count();
            writeln!(
                out,
                "{} finding(s), {} would be blocked",
                reports.len(),
                blocked
            )
        }
        Format::Github => {
            for r in reports {
                let level = match r.action.as_str() {
                    "block" => "error",
                    "warn" => "warning",
                    _ => "notice",
                };
                let escape = |s: &str| {
                    s.replace('%', "%25")
                        .replace('\r', "%0D")
                        .replace('\n', "%0A")
                };
                writeln!(
                    out,
                    "::{level} file={},line={},col={},title=ddlgate {}::{} Hint: {}",
                    r.file,
                    r.line,
                    r.column,
                    r.rule,
                    escape(&r.message),
                    escape(&r.hint)
                )?;
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::policy::Policy;

    fn check(sql: &str, opts: &Options) -> Vec<Reported> {
        let policy = Policy::from_config(&Config::default());
        check_source(
            "m.sql",
            sql.as_bytes(),
            opts,
            policy.profile_for("", "", ""),
        )
    }

    const PLAIN: Options = Options {
        pg_version: None,
        assume_in_transaction: false,
    };

    #[test]
    fn reports_positions_rules_and_actions() {
        let r = check(
            "SELECT 1;\n\n  CREATE INDEX i ON t (x);\nCREATE INDEX CONCURRENTLY j ON t (y);\n",
            &PLAIN,
        );
        assert_eq!(r.len(), 1);
        assert_eq!(
            (
                r[0].line,
                r[0].column,
                r[0].rule.as_str(),
                r[0].action.as_str()
            ),
            (3, 3, "require-concurrent-index-creation", "rewrite")
        );
        assert!(
            !fails(&r),
            "a statement the proxy rewrites does not fail the check"
        );
    }

    #[test]
    fn transactions_in_the_file_and_assumed_ones_change_verdicts() {
        let r = check(
            "BEGIN;\nCREATE INDEX i ON t (x);\nCOMMIT;\nCREATE INDEX j ON t (x);",
            &PLAIN,
        );
        assert_eq!(
            r.iter().map(|r| r.action.as_str()).collect::<Vec<_>>(),
            ["block", "rewrite"]
        );
        assert!(fails(&r));
        let r = check(
            "CREATE INDEX CONCURRENTLY i ON t (x);",
            &Options {
                assume_in_transaction: true,
                ..PLAIN
            },
        );
        assert_eq!(r[0].rule, "ban-concurrent-index-creation-in-transaction");
    }

    #[test]
    fn tables_created_in_the_transaction_are_exempt() {
        let r = check(
            "BEGIN; CREATE TABLE n (x int); CREATE INDEX i ON n (x); COMMIT;",
            &PLAIN,
        );
        assert!(r.is_empty(), "{r:?}");
    }

    #[test]
    fn overrides_and_invalid_overrides() {
        let r = check(
            "BEGIN; /* ddlgate:allow require-concurrent-index-creation reason=\"tiny\" */ CREATE INDEX i ON t (x); COMMIT;",
            &PLAIN,
        );
        assert_eq!(
            (r[0].action.as_str(), r[0].override_reason.as_deref()),
            ("allow", Some("tiny"))
        );
        assert!(!fails(&r));
        let r = check(
            "/* ddlgate:allow nope reason=\"x\" */ CREATE INDEX i ON t (x);",
            &PLAIN,
        );
        assert_eq!(r[0].rule, "invalid-override");
        assert!(fails(&r));
    }

    #[test]
    fn positions_stay_exact_across_many_statements_and_units() {
        let mut sql = String::new();
        for i in 0..2000 {
            sql.push_str(&format!("SELECT {i};\n"));
        }
        sql.push_str("  CREATE INDEX i ON t (x);\n");
        let r = check(&sql, &PLAIN);
        assert_eq!((r[0].line, r[0].column), (2001, 3));
        let policy = Policy::from_config(&Config::default());
        let src = b"CREATE INDEX a ON t (x);\nCREATE INDEX b ON t (x);\n";
        let r = check_units(
            "m.sql",
            src,
            &[
                Unit {
                    range: 0..25,
                    mode: RunMode::Statements,
                },
                Unit {
                    range: 25..src.len(),
                    mode: RunMode::OneTransaction,
                },
            ],
            &PLAIN,
            policy.profile_for("", "", ""),
        );
        assert_eq!(
            r.iter()
                .map(|r| (r.line, r.action.as_str()))
                .collect::<Vec<_>>(),
            [(1, "rewrite"), (2, "block")]
        );
    }

    #[test]
    fn renders_every_format() {
        let r = check("BEGIN; CREATE INDEX i ON t (x);", &PLAIN);
        for (format, needle) in [
            (Format::Text, "m.sql:1:8: block"),
            (Format::Json, "\"blocked\": true"),
            (Format::Github, "::error file=m.sql,line=1,col=8"),
        ] {
            let mut out = Vec::new();
            render(&r, format, &mut out).expect("render");
            let text = String::from_utf8(out).expect("utf-8");
            assert!(text.contains(needle), "{format:?}: {text}");
        }
    }

    /// A table created in the file under the name a `format()` template is filled with does
    /// not make the template's unknown target new: the file is refused, as the proxy refuses
    /// it (before, `check` passed it with exit 0).
    #[test]
    fn a_template_placeholder_is_never_a_new_table() {
        let r = check(
            "CREATE TABLE ddlgate_arg (x int);\n\
             DO $$BEGIN EXECUTE pg_catalog.format('CREATE INDEX v_ts ON %I (ts)', 'victim'); END$$;",
            &Options {
                pg_version: None,
                assume_in_transaction: true,
            },
        );
        assert!(fails(&r), "{r:?}");
        assert_eq!(r[0].rule, "require-concurrent-index-creation");
    }

    /// One statement of the rule table, as the proxy's analysis decides it for a simple Query
    /// holding only that statement (no catalog facts, as offline).
    fn proxy_action(sql: &str, tx: TxStatus, version: u32) -> &'static str {
        use crate::analysis::{Analyzer, Context, Source};
        use crate::metrics::Counters;
        let policy = Policy::from_config(&Config::default());
        let (_, plan) = Analyzer::default().analyze(
            &Counters::default(),
            policy.profile_for("", "", ""),
            Source::Query,
            sql.as_bytes(),
            &Context {
                tx,
                lex: LexOptions::default(),
                server_version: Some(version * 10_000),
                pipelined: false,
                tool: None,
            },
        );
        match &plan.sql {
            // Leading comments stay in front of the raising block (see `analysis::splice`).
            Some(new) if new.windows(11).any(|w| w == b"DO $ddlgate") => "block",
            Some(_) => "rewrite",
            None if plan.recipe.is_some() => "rewrite",
            None if !plan.notices.is_empty() => "warn",
            None => "allow",
        }
    }

    /// The same statement through `ddlgate check`: the strongest action reported.
    fn check_action(sql: &str, in_tx: bool, version: u32) -> &'static str {
        let reports = check(
            sql,
            &Options {
                pg_version: Some(version),
                assume_in_transaction: in_tx,
            },
        );
        ["block", "rewrite", "warn"]
            .into_iter()
            .find(|a| reports.iter().any(|r| r.action == *a))
            .unwrap_or("allow")
    }

    /// Every rule of the rule table, and the forms that once decided differently (a rewrite
    /// whose steps cannot be built), through both engines: outside and inside a transaction,
    /// on three server versions. Issue 11: `check` and the proxy decide identically.
    #[test]
    fn check_and_proxy_decide_identically_on_the_rule_table() {
        const CORPUS: &[&str] = &[
            "CREATE INDEX i ON t (x)",
            "CREATE UNIQUE INDEX i ON t (x)",
            "CREATE INDEX CONCURRENTLY i ON t (x)",
            "DROP INDEX i",
            "DROP INDEX i, j",
            "REINDEX INDEX i",
            "REINDEX TABLE t",
            "ALTER TABLE t ADD COLUMN c timestamptz DEFAULT clock_timestamp()",
            "ALTER TABLE t ADD COLUMN c int DEFAULT 0",
            "ALTER TABLE t ADD COLUMN c timestamptz DEFAULT now()",
            "ALTER TABLE t ADD COLUMN j json",
            "ALTER TABLE t ALTER COLUMN x DROP DEFAULT",
            "DROP VIEW v",
            "DROP FUNCTION f()",
            "ALTER SEQUENCE s RENAME TO s2",
            "ALTER VIEW v RENAME TO w",
            "ALTER TABLE t ADD COLUMN n bigserial",
            "ALTER TABLE t ADD COLUMN r int NOT NULL",
            "ALTER TABLE t ALTER COLUMN x TYPE bigint",
            "ALTER TABLE t ALTER COLUMN x SET NOT NULL",
            "ALTER TABLE t DROP COLUMN x",
            "ALTER TABLE t RENAME COLUMN x TO y",
            "ALTER TABLE t ALTER COLUMN x DROP NOT NULL",
            "ALTER TABLE t ADD CONSTRAINT fk FOREIGN KEY (x) REFERENCES u (id)",
            "ALTER TABLE t ADD FOREIGN KEY (x) REFERENCES u (id)",
            "ALTER TABLE t ADD COLUMN u_id int REFERENCES u (id)",
            "ALTER TABLE t ADD CONSTRAINT c CHECK (x > 0)",
            "ALTER TABLE t ADD CHECK (x > 0)",
            // One transaction either way: the proxy sees one Query, `check` one statement at a
            // time (what it carries from the ADD to the VALIDATE, the proxy reads from the catalog).
            "BEGIN; ALTER TABLE t ADD CONSTRAINT c CHECK (x > 0) NOT VALID; ALTER TABLE t VALIDATE CONSTRAINT c; COMMIT",
            "ALTER TABLE t ADD CHECK (ts AT TIME ZONE 'UTC' > now())",
            "ALTER TABLE t ADD CONSTRAINT u UNIQUE (x)",
            "ALTER TABLE t ADD UNIQUE (x)",
            "ALTER TABLE t ADD PRIMARY KEY (id)",
            "ALTER TABLE t ADD CONSTRAINT t_pkey PRIMARY KEY (id)",
            "ALTER TABLE t ADD EXCLUDE USING gist (r WITH &&)",
            "ALTER TABLE t DROP CONSTRAINT x, ADD CONSTRAINT x FOREIGN KEY (a) REFERENCES u (id)",
            "ALTER TABLE t ADD COLUMN a int, ADD CONSTRAINT a_pos CHECK (a > 0)",
            "DROP TABLE t",
            "TRUNCATE t CASCADE",
            "TRUNCATE t",
            "ALTER TABLE t RENAME TO t2",
            "ALTER TABLE t SET SCHEMA s",
            "ALTER INDEX i RENAME TO j",
            "ALTER TABLE t SET TABLESPACE ts",
            "ALTER TABLE t SET UNLOGGED",
            "VACUUM FULL t",
            "CLUSTER t USING i",
            "LOCK TABLE t IN ACCESS EXCLUSIVE MODE",
            "LOCK TABLE t IN ACCESS SHARE MODE",
            "DROP DATABASE d",
            "DROP OWNED BY r",
            "DROP TYPE ty CASCADE",
            "DROP FUNCTION f() CASCADE",
            "ALTER SCHEMA s RENAME TO s2",
            "CREATE RULE r AS ON INSERT TO t DO INSTEAD NOTHING",
            "ALTER TABLE p DETACH PARTITION p1",
            "ALTER TABLE p DETACH PARTITION p1 CONCURRENTLY",
            "CREATE TABLE p2 PARTITION OF p FOR VALUES IN (2)",
            "ALTER TABLE p ATTACH PARTITION p3 FOR VALUES IN (3)",
            "ALTER TYPE e ADD VALUE 'x'",
            "ALTER TYPE e RENAME VALUE 'a' TO 'b'",
            "CREATE DOMAIN d AS int CHECK (VALUE > 0)",
            "ALTER DOMAIN d ADD CONSTRAINT c CHECK (VALUE > 0)",
            "ALTER DOMAIN d ADD CONSTRAINT c CHECK (VALUE > 0) NOT VALID",
            "REFRESH MATERIALIZED VIEW mv",
            "REFRESH MATERIALIZED VIEW CONCURRENTLY mv",
            "DO $$BEGIN EXECUTE 'DROP TABLE ' || 'x'; END$$",
            "DO $$BEGIN DROP INDEX i; END$$",
            "CREATE FUNCTION f() RETURNS void LANGUAGE plpgsql AS $$BEGIN DROP INDEX i; END$$",
            "SELECT dblink_exec('c', 'DROP TABLE t')",
            "COPY t FROM PROGRAM 'cat x'",
            "ALTER TABLE t FROBNICATE",
            "CREATE TABLE n (id int PRIMARY KEY, t_id int REFERENCES t (id))",
            "/* ddlgate:allow renaming-column reason=\"unused\" */ ALTER TABLE t RENAME COLUMN x TO y",
            "/* ddlgate:allow no-such-rule reason=\"typo\" */ ALTER TABLE t RENAME COLUMN x TO y",
            "SELECT 1",
            "selec 1",
        ];
        let mut differ = Vec::new();
        for sql in CORPUS {
            for version in [11, 15, 18] {
                for in_tx in [false, true] {
                    let tx = if in_tx {
                        TxStatus::InTransaction
                    } else {
                        TxStatus::Idle
                    };
                    let (proxy, check) = (
                        proxy_action(sql, tx, version),
                        check_action(sql, in_tx, version),
                    );
                    if proxy != check {
                        differ.push(format!(
                            "{sql} (PostgreSQL {version}, in transaction: {in_tx}): proxy {proxy}, check {check}"
                        ));
                    }
                }
            }
        }
        assert!(
            differ.is_empty(),
            "decisions differ:\n{}",
            differ.join("\n")
        );

        // The corpus covers the whole rule table: every rule fires on some statement.
        let mut fired: HashSet<String> = CORPUS
            .iter()
            .flat_map(|sql| {
                [(11, false), (11, true), (15, true)].into_iter().flat_map(
                    move |(version, in_tx)| {
                        check(
                            sql,
                            &Options {
                                pg_version: Some(version),
                                assume_in_transaction: in_tx,
                            },
                        )
                    },
                )
            })
            .map(|r| r.rule)
            .collect();
        // A rule on what a transaction does after the statement: a multi-statement Query in
        // the proxy, the rest of the transaction in a file run in one (psql -f runs the two
        // statements in two transactions, where the value is committed before its use).
        let both = "ALTER TYPE e ADD VALUE 'y'; UPDATE t SET e = 'y'";
        assert_eq!(proxy_action(both, TxStatus::Idle, 15), "warn");
        assert_eq!(proxy_action(both, TxStatus::InTransaction, 15), "warn");
        assert_eq!(check_action(both, true, 15), "warn");
        assert_eq!(check_action(both, false, 15), "allow");
        assert_eq!(
            check_action(
                "BEGIN; ALTER TYPE e ADD VALUE 'y'; COMMIT; UPDATE t SET e = 'y'",
                false,
                15
            ),
            "allow"
        );
        fired.insert("using-new-enum-value-in-transaction".to_owned());
        // Likewise a required column's default added and dropped in one migration (offline
        // there is no catalog to show a DROP DEFAULT alone is of a required column's).
        let both = "ALTER TABLE t ADD COLUMN s text NOT NULL DEFAULT 'x'; ALTER TABLE t ALTER COLUMN s DROP DEFAULT";
        assert_eq!(proxy_action(both, TxStatus::Idle, 15), "warn");
        assert_eq!(check_action(both, true, 15), "warn");
        fired.insert("dropping-required-column-default".to_owned());
        // `large-backfill` rests on the live planner's estimate, which neither a file nor the
        // proxy without a server has (tests/backfill_guard.rs runs it on a real one).
        fired.insert(crate::rules::LARGE_BACKFILL.to_owned());
        let missing: Vec<&str> = crate::rules::RULES
            .iter()
            .map(|r| r.id)
            .filter(|id| !fired.contains(*id))
            .collect();
        assert!(
            missing.is_empty(),
            "rules no corpus statement fires: {missing:?}"
        );
    }
}

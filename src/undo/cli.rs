//! `ddlgate undo`: applies the journal's inverses, newest first.
//!
//! It is a client of a **running ddlgate**: `--database` is a connection URL pointing at the
//! proxy, and every inverse is sent as a simple Query of its own, so it passes the same rules,
//! rewrites, recipes and lock guard as any other DDL (a rebuilt index is built CONCURRENTLY
//! without blocking writes; an inverse the policy blocks is refused with the proxy's own
//! explanation). Running the engine in-process would need a second copy of the DDL lane; going
//! through the proxy reuses it whole. Before applying an entry it refuses, with the reason,
//! one recorded as irreversible, and one whose object changed since it was recorded (its
//! fingerprint, `journal::fingerprint_sql`, differs: a later statement not undone yet, or a
//! change made outside ddlgate).

use std::fmt::Write as _;
use std::time::Duration;

use tokio_postgres::SimpleQueryMessage;

use super::journal;
use crate::client::describe;
use crate::sql::quote;

/// The application_name `ddlgate undo` connects with; entries its own inverses create in the
/// journal are not picked by `--last`.
pub const APPLICATION_NAME: &str = "ddlgate undo";

/// What to undo.
#[derive(Debug, Clone)]
pub struct Options {
    /// Connection URL or key=value string (through ddlgate).
    pub database: String,
    /// Undo the newest `last` entries not undone yet (default 1).
    pub last: Option<usize>,
    /// Undo this entry.
    pub id: Option<i64>,
    /// Print what would run; change nothing.
    pub dry_run: bool,
    /// The journal's schema.
    pub schema: String,
    /// CA certificates (PEM) that must have signed the proxy's certificate (libpq's
    /// `verify-full`); without it, TLS as the connection string's `sslmode` says, unverified.
    pub ca_file: Option<std::path::PathBuf>,
}

/// How `ddlgate undo` ended: its output, and whether everything asked for was undone.
#[derive(Debug)]
pub struct Outcome {
    pub output: String,
    pub ok: bool,
}

/// One journal entry as `undo` reads it.
#[derive(Debug)]
struct Entry {
    id: i64,
    at: String,
    user: String,
    statement: String,
    inverse: Option<Vec<String>>,
    irreversible: Option<String>,
    object: Option<i64>,
    fingerprint: Option<String>,
    batch: Option<String>,
}

async fn connect(opts: &Options) -> Result<tokio_postgres::Client, String> {
    let mut config =
        crate::client::config(&opts.database, APPLICATION_NAME).map_err(|e| e.to_string())?;
    // Its own name, whatever the string says: entries its inverses create are known by it.
    config.application_name(APPLICATION_NAME);
    crate::client::connect(config, opts.ca_file.as_deref(), Duration::from_secs(10))
        .await
        .map_err(|e| match e {
            crate::client::ConnectError::Usage(m) => m,
            crate::client::ConnectError::Failed(m) => format!("cannot connect: {m}"),
        })
}

async fn rows(
    client: &tokio_postgres::Client,
    sql: &str,
) -> Result<Vec<Vec<Option<String>>>, String> {
    let messages = client.simple_query(sql).await.map_err(|e| describe(&e))?;
    Ok(messages
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => {
                Some((0..r.len()).map(|i| r.get(i).map(str::to_owned)).collect())
            }
            _ => None,
        })
        .collect())
}

/// Reads a `text[]` in PostgreSQL's output format (`{a,"b c"}`).
fn text_array(s: &str) -> Vec<String> {
    let inner = s
        .strip_prefix('{')
        .and_then(|s| s.strip_suffix('}'))
        .unwrap_or("");
    let mut out = Vec::new();
    let mut chars = inner.chars().peekable();
    while chars.peek().is_some() {
        let mut item = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        if let Some(n) = chars.next() {
                            item.push(n)
                        }
                    }
                    '"' => break,
                    c => item.push(c),
                }
            }
            // The comma after the closing quote.
            chars.next();
        } else {
            for c in chars.by_ref() {
                if c == ',' {
                    break;
                }
                item.push(c);
            }
        }
        out.push(item);
    }
    out
}

fn entry(r: &[Option<String>]) -> Entry {
    let col = |i: usize| r.get(i).cloned().flatten();
    Entry {
        id: col(0).and_then(|v| v.parse().ok()).unwrap_or_default(),
        at: col(1).unwrap_or_default(),
        user: col(2).unwrap_or_default(),
        statement: col(3).unwrap_or_default(),
        inverse: col(4).map(|a| text_array(&a)),
        irreversible: col(5),
        object: col(6).and_then(|v| v.parse().ok()),
        fingerprint: col(7),
        batch: col(9),
    }
}

fn one_line(s: &str) -> String {
    let s = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if s.chars().count() > 120 {
        format!("{}…", s.chars().take(120).collect::<String>())
    } else {
        s
    }
}

/// Whether `sql` is exactly one DDL statement (what every inverse ddlgate records is).
fn is_one_ddl_statement(sql: &str) -> bool {
    use crate::sql::prefilter::{self, StatementClass};
    let mut spans = Vec::new();
    crate::sql::lexer::split_into(
        sql.as_bytes(),
        crate::sql::lexer::LexOptions::default(),
        &mut spans,
    );
    spans.retain(|s| !s.is_empty());
    matches!(spans.as_slice(), [one] if prefilter::classify(sql.as_bytes(), one) == StatementClass::DdlCandidate)
}

/// Runs `ddlgate undo`.
pub async fn run(opts: &Options) -> Result<Outcome, String> {
    let client = connect(opts).await?;
    let table = format!("{}.journal", quote::ident(&opts.schema));
    let exists = rows(
        &client,
        &format!("SELECT to_regclass({}) IS NOT NULL", quote::literal(&table)),
    )
    .await?;
    if exists
        .first()
        .and_then(|r| r.first().cloned().flatten())
        .as_deref()
        != Some("t")
    {
        return Err(format!(
            "this database has no undo journal ({table}): enable [journal] in ddlgate's configuration; statements that ran before have their inverses in the audit log only"
        ));
    }
    // Whoever can write the journal decides what `undo` runs: only a journal the connecting
    // role owns is trusted (a superuser undoing another role's journal connects as that role).
    let owned = rows(
        &client,
        &format!(
            "SELECT c.relowner = (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = current_user), \
             pg_catalog.pg_get_userbyid(c.relowner) FROM pg_catalog.pg_class c WHERE c.oid = to_regclass({})",
            quote::literal(&table)
        ),
    )
    .await?;
    let owner_row = owned.first();
    if owner_row
        .and_then(|r| r.first().cloned().flatten())
        .as_deref()
        != Some("t")
    {
        return Err(format!(
            "{table} is owned by {}, not by the role connected: connect as its owner, so that only entries that role wrote (or could have) are run",
            owner_row
                .and_then(|r| r.get(1).cloned().flatten())
                .unwrap_or_else(|| "another role".to_owned())
        ));
    }
    let columns =
        "id, at::text, username, statement, inverse, irreversible, object_oid::int8, fingerprint";
    let select = match (opts.id, opts.last) {
        (Some(_), Some(_)) => return Err("give either --id or --last, not both".to_owned()),
        (Some(id), None) => format!(
            "SELECT {columns}, undone_at::text, batch FROM {table} WHERE id = {id} AND database = current_database()"
        ),
        (None, last) => format!(
            "SELECT {columns}, undone_at::text, batch FROM {table} WHERE undone_at IS NULL AND database = current_database() \
             AND application_name <> {} ORDER BY id DESC LIMIT {}",
            quote::literal(APPLICATION_NAME),
            last.unwrap_or(1)
        ),
    };
    let found = rows(&client, &select).await?;
    let mut out = String::new();
    if found.is_empty() {
        match opts.id {
            Some(id) => return Err(format!("no journal entry {id} in this database")),
            None => {
                out.push_str("nothing to undo: every journal entry of this database is undone\n");
                return Ok(Outcome {
                    output: out,
                    ok: true,
                });
            }
        }
    }
    // Objects a newer entry of this run changes first: their fingerprints can only be checked
    // once it is undone (in a dry run, not at all).
    let mut touched: Vec<i64> = Vec::new();
    // Batches (one message's entries, fingerprinted after all of them) checked at their newest
    // entry in this run: the older ones were changed since only by the batch's own inverses.
    let mut batches: Vec<String> = Vec::new();
    for r in &found {
        let e = entry(r);
        let _ = writeln!(
            out,
            "entry {} ({} by {}): {}",
            e.id,
            e.at,
            e.user,
            one_line(&e.statement)
        );
        if let Some(undone) = r.get(8).cloned().flatten() {
            let _ = writeln!(out, "  refused: already undone at {undone}");
            return Ok(Outcome {
                output: out,
                ok: false,
            });
        }
        let Some(inverse) = &e.inverse else {
            let _ = writeln!(
                out,
                "  refused: irreversible: {}",
                e.irreversible
                    .as_deref()
                    .unwrap_or("no inverse was recorded")
            );
            return Ok(Outcome {
                output: out,
                ok: false,
            });
        };
        let same_batch = e.batch.as_ref().is_some_and(|b| batches.contains(b));
        let checkable = e
            .object
            .is_none_or(|o| !opts.dry_run || !touched.contains(&o));
        if same_batch {
            // Checked with the batch's newest entry.
        } else if let (Some(oid), true) = (e.object, checkable) {
            let now = rows(
                &client,
                &format!("SELECT {}", journal::fingerprint_sql(&oid.to_string())),
            )
            .await?;
            let now = now.first().and_then(|r| r.first().cloned().flatten());
            if now != e.fingerprint {
                let _ = writeln!(
                    out,
                    "  refused: the object it changed (OID {oid}) has changed since it was recorded — by a later statement not undone yet, or outside ddlgate; undo those first, or undo this one by hand"
                );
                return Ok(Outcome {
                    output: out,
                    ok: false,
                });
            }
        } else if let Some(oid) = e.object {
            let _ = writeln!(
                out,
                "  (whether OID {oid} changed since is checked once the newer entries are undone)"
            );
        }
        if let Some(o) = e.object {
            touched.push(o);
        }
        if let Some(b) = &e.batch {
            batches.push(b.clone());
        }
        // Each inverse is one statement, as ddlgate wrote it: anything else was not.
        if let Some(bad) = inverse.iter().find(|sql| !is_one_ddl_statement(sql)) {
            let _ = writeln!(
                out,
                "  refused: the recorded inverse is not one DDL statement, so ddlgate did not write it: {}",
                one_line(bad)
            );
            return Ok(Outcome {
                output: out,
                ok: false,
            });
        }
        if inverse.is_empty() {
            let _ = writeln!(
                out,
                "  nothing to undo (the statement changed nothing lasting)"
            );
        }
        for sql in inverse {
            if opts.dry_run {
                let _ = writeln!(out, "  would run: {sql}");
                continue;
            }
            let _ = writeln!(out, "  running: {sql}");
            if let Err(e) = client.simple_query(sql).await {
                let _ = writeln!(out, "  failed: {}", describe(&e));
                return Ok(Outcome {
                    output: out,
                    ok: false,
                });
            }
        }
        if !opts.dry_run {
            client
                .simple_query(&format!(
                    "UPDATE {table} SET undone_at = now(), undone_by = current_user WHERE id = {}",
                    e.id
                ))
                .await
                .map_err(|err| {
                    format!(
                        "entry {} was undone but could not be marked so: {}",
                        e.id,
                        describe(&err)
                    )
                })?;
            let _ = writeln!(out, "  undone");
        }
    }
    if opts.dry_run {
        out.push_str("dry run: nothing was changed\n");
    }
    Ok(Outcome {
        output: out,
        ok: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inverses_are_single_ddl_statements() {
        assert!(is_one_ddl_statement(
            r#"ALTER TABLE "public"."t" DROP COLUMN "a""#
        ));
        assert!(is_one_ddl_statement(
            "CREATE INDEX CONCURRENTLY ix ON public.t USING btree (a)"
        ));
        assert!(!is_one_ddl_statement("SELECT pg_sleep(1)"));
        assert!(!is_one_ddl_statement(
            "ALTER TABLE t DROP COLUMN a; DROP TABLE u"
        ));
        assert!(!is_one_ddl_statement(""));
    }

    #[test]
    fn reads_text_arrays() {
        assert_eq!(text_array("{}"), Vec::<String>::new());
        assert_eq!(
            text_array(r#"{"ALTER TABLE \"public\".\"t\" DROP COLUMN \"a\"",plain}"#),
            [r#"ALTER TABLE "public"."t" DROP COLUMN "a""#, "plain"]
        );
    }
}

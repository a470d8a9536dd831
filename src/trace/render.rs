//! The three ways to print a [`Report`]: plain aligned columns for a terminal, a markdown table
//! for a pull request, and JSON (the [`Report`] as serialized: its field names are the stable
//! format, documented in README "ddlgate trace").

use std::io::Write;

use super::{Lock, Report, Status, Traced};

/// How to present the trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns, then the details of each decision and error.
    Table,
    /// A markdown table and notes, for a pull request.
    Markdown,
    /// One JSON document.
    Json,
}

pub fn render(report: &Report, format: Format, out: &mut impl Write) -> std::io::Result<()> {
    match format {
        Format::Json => {
            let text = serde_json::to_string_pretty(report).map_err(std::io::Error::other)?;
            writeln!(out, "{text}")
        }
        Format::Table => table(report, out),
        Format::Markdown => markdown(report, out),
    }
}

const HEADERS: [&str; 7] = [
    "#",
    "statement",
    "status",
    "took",
    "locks taken",
    "rewritten",
    "ddlgate",
];

/// Longest statement excerpt in the terminal table (the full text is in the details).
const STATEMENT_WIDTH: usize = 48;

fn lock_text(l: &Lock) -> String {
    let blocks = match (l.blocks_reads, l.blocks_writes) {
        (true, _) => " [blocks reads+writes]",
        (false, true) => " [blocks writes]",
        _ => "",
    };
    if l.locktype == "relation" {
        format!("{} on {} {}{blocks}", l.mode, l.kind, l.object)
    } else {
        format!("{} {} {}", l.locktype, l.mode, l.object)
            .trim_end()
            .to_owned()
    }
}

/// The lines for a list of locks: relation and advisory locks one by one; the other lock
/// types (`object` locks on constraints, triggers, types…, `tuple`, …) summed up per type and
/// mode, by catalog — the JSON lists each.
fn lock_lines(locks: &[Lock]) -> Vec<String> {
    let mut out = Vec::new();
    // (locktype, mode) → [(catalog, count)], in first-seen order.
    type Counted = Vec<(String, usize)>;
    let mut groups: Vec<((&str, &str), Counted)> = Vec::new();
    for l in locks {
        if l.locktype == "relation" || l.locktype == "advisory" {
            out.push(lock_text(l));
            continue;
        }
        let catalog = if l.locktype == "object" {
            l.object.split(' ').next().unwrap_or_default().to_owned()
        } else {
            String::new()
        };
        let key = (l.locktype.as_str(), l.mode.as_str());
        let group = match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, g)) => g,
            None => {
                groups.push((key, Vec::new()));
                &mut groups.last_mut().expect("invariant: just pushed").1
            }
        };
        match group.iter_mut().find(|(c, _)| *c == catalog) {
            Some((_, n)) => *n += 1,
            None => group.push((catalog, 1)),
        }
    }
    for ((locktype, mode), group) in groups {
        let what: Vec<String> = group
            .iter()
            .map(|(catalog, n)| match (catalog.is_empty(), *n) {
                (true, n) => format!("×{n}"),
                (false, 1) => catalog.clone(),
                (false, n) => format!("{catalog} ×{n}"),
            })
            .collect();
        out.push(format!("{locktype} {mode}: {}", what.join(", ")));
    }
    out
}

fn took(t: &Traced) -> String {
    t.duration_ms
        .map_or("-".to_owned(), |ms| format!("{ms:.1} ms"))
}

fn decision_text(t: &Traced) -> String {
    let d = &t.decision;
    if !d.ddl {
        return "-".to_owned();
    }
    let rules: Vec<&str> = d
        .findings
        .iter()
        .filter(|f| f.action != "allow")
        .map(|f| f.rule.as_str())
        .collect();
    if rules.is_empty() {
        d.action.clone()
    } else {
        format!("{} ({})", d.action, rules.join(", "))
    }
}

fn status_text(t: &Traced) -> String {
    match t.status {
        Status::Traced => "traced".to_owned(),
        Status::NotTraced => "NOT TRACED".to_owned(),
        Status::Skipped => "skipped".to_owned(),
        Status::Failed => "FAILED".to_owned(),
    }
}

fn cut(s: &str, width: usize) -> String {
    if s.chars().count() > width {
        format!("{}…", s.chars().take(width - 1).collect::<String>())
    } else {
        s.to_owned()
    }
}

/// The rows of the table: one per statement, continued on more lines for its other locks and
/// rewritten relations.
fn rows(report: &Report, width: usize) -> Vec<[String; 7]> {
    let mut out = Vec::new();
    for (i, t) in report.statements.iter().enumerate() {
        let locks: Vec<String> = if t.status == Status::NotTraced {
            t.documented_lock
                .iter()
                .map(|l| format!("(documented) {l}"))
                .collect()
        } else {
            lock_lines(&t.new_locks)
        };
        let rewritten: Vec<String> = t
            .rewritten
            .iter()
            .map(|r| format!("{} {}", r.kind, r.name))
            .collect();
        let lines = locks.len().max(rewritten.len()).max(1);
        for line in 0..lines {
            let first = line == 0;
            let cell = |s: String| if first { s } else { String::new() };
            out.push([
                cell((i + 1).to_string()),
                cell(if width == usize::MAX {
                    t.statement.clone()
                } else {
                    cut(&t.statement, width)
                }),
                cell(status_text(t)),
                cell(took(t)),
                locks
                    .get(line)
                    .cloned()
                    .unwrap_or_else(|| if first { "-".into() } else { String::new() }),
                rewritten
                    .get(line)
                    .cloned()
                    .unwrap_or_else(|| if first { "-".into() } else { String::new() }),
                cell(decision_text(t)),
            ]);
        }
    }
    out
}

fn table(report: &Report, out: &mut impl Write) -> std::io::Result<()> {
    writeln!(
        out,
        "ddlgate trace on database {} (PostgreSQL {}): {} statement(s), rolled back",
        report.database,
        report.server_version,
        report.statements.len()
    )?;
    if !report.scratch {
        writeln!(
            out,
            "warning: the database is not marked scratch (--allow-non-scratch)"
        )?;
    }
    writeln!(out)?;
    let rows = rows(report, STATEMENT_WIDTH);
    let mut widths = HEADERS.map(|h| h.chars().count());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[String]| -> String {
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == cells.len() {
                s.push_str(cell);
            } else {
                s.push_str(cell);
                s.push_str(&" ".repeat(w - cell.chars().count() + 2));
            }
        }
        s.trim_end().to_owned()
    };
    writeln!(out, "{}", line(&HEADERS.map(str::to_owned)))?;
    for row in &rows {
        writeln!(out, "{}", line(row))?;
    }
    details(report, out, false)
}

/// Per statement, what the table has no room for: where it is, the full decision, the error.
fn details(report: &Report, out: &mut impl Write, md: bool) -> std::io::Result<()> {
    let bullet = if md { "- " } else { "  " };
    writeln!(out)?;
    for (i, t) in report.statements.iter().enumerate() {
        let interesting = t.status != Status::Traced
            || !t.decision.findings.is_empty()
            || t.error.is_some()
            || !t.created.is_empty()
            || !t.dropped.is_empty();
        if !interesting {
            continue;
        }
        let head = format!(
            "{}. {}:{}:{} {}",
            i + 1,
            t.file,
            t.line,
            t.column,
            t.statement
        );
        if md {
            writeln!(out, "**{}**", escape(&head))?;
            writeln!(out)?;
        } else {
            writeln!(out, "{head}")?;
        }
        if let Some(why) = &t.reason {
            writeln!(out, "{bullet}{}", esc(why, md))?;
        }
        if let Some(lock) = &t.documented_lock {
            writeln!(out, "{bullet}documented lock: {}", esc(lock, md))?;
        }
        if !t.created.is_empty() {
            let names: Vec<String> = t
                .created
                .iter()
                .map(|r| format!("{} {}", r.kind, r.name))
                .collect();
            writeln!(out, "{bullet}created: {}", esc(&names.join(", "), md))?;
        }
        if !t.dropped.is_empty() {
            let names: Vec<String> = t
                .dropped
                .iter()
                .map(|r| format!("{} {}", r.kind, r.name))
                .collect();
            writeln!(out, "{bullet}dropped: {}", esc(&names.join(", "), md))?;
        }
        for f in &t.decision.findings {
            writeln!(
                out,
                "{bullet}ddlgate {} {}: {}",
                f.action,
                f.rule,
                esc(&f.message, md)
            )?;
            let sub = if md { "  - " } else { "    " };
            writeln!(out, "{sub}hint: {}", esc(&f.hint, md))?;
        }
        if let Some(sql) = &t.decision.rewritten_sql {
            writeln!(out, "{bullet}ddlgate would run: {}", esc(sql, md))?;
        }
        for (n, step) in t.decision.steps.iter().enumerate() {
            writeln!(out, "{bullet}step {}: {}", n + 1, esc(step, md))?;
        }
        if let Some(e) = &t.error {
            writeln!(out, "{bullet}ERROR {}: {}", e.sqlstate, esc(&e.message, md))?;
            if let Some(d) = &e.detail {
                writeln!(out, "{bullet}DETAIL: {}", esc(d, md))?;
            }
            if let Some(h) = &e.hint {
                writeln!(out, "{bullet}HINT: {}", esc(h, md))?;
            }
        }
        writeln!(out)?;
    }
    if md {
        writeln!(out, "**Locks held at the end of the transaction**")?;
        writeln!(out)?;
    } else {
        writeln!(out, "Locks held at the end of the transaction:")?;
    }
    if report.locks_at_end.is_empty() {
        writeln!(out, "{bullet}none")?;
    }
    for l in lock_lines(&report.locks_at_end) {
        writeln!(out, "{bullet}{}", esc(&l, md))?;
    }
    writeln!(out)?;
    let failed = report
        .statements
        .iter()
        .position(|t| t.status == Status::Failed);
    let blocked: Vec<String> = report
        .statements
        .iter()
        .enumerate()
        .filter(|(_, t)| t.decision.action == "block")
        .map(|(i, _)| (i + 1).to_string())
        .collect();
    let summary = match (failed, blocked.is_empty()) {
        (Some(i), _) => format!(
            "Statement {} failed: the trace stopped there.{}",
            i + 1,
            if blocked.is_empty() {
                String::new()
            } else {
                format!(" ddlgate would block statement(s) {}.", blocked.join(", "))
            }
        ),
        (None, false) => format!("ddlgate would block statement(s) {}.", blocked.join(", ")),
        (None, true) => "Traced; ddlgate would block nothing.".to_owned(),
    };
    writeln!(out, "{summary}")
}

fn esc(s: &str, md: bool) -> String {
    if md { escape(s) } else { s.to_owned() }
}

/// Text in a markdown table cell or line: no pipes, no line breaks, no HTML.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '|' => out.push_str("\\|"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '`' => out.push('\''),
            '*' | '_' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '\n' | '\r' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

fn markdown(report: &Report, out: &mut impl Write) -> std::io::Result<()> {
    writeln!(
        out,
        "### ddlgate trace on `{}` (PostgreSQL {})",
        report.database.replace('`', "'"),
        escape(&report.server_version)
    )?;
    writeln!(out)?;
    writeln!(out, "| {} |", HEADERS.join(" | "))?;
    writeln!(out, "|{}", "---|".repeat(HEADERS.len()))?;
    // One row per statement: its locks and rewrites joined with <br>.
    for (i, t) in report.statements.iter().enumerate() {
        let locks: Vec<String> = if t.status == Status::NotTraced {
            t.documented_lock
                .iter()
                .map(|l| format!("(documented) {}", escape(l)))
                .collect()
        } else {
            lock_lines(&t.new_locks).iter().map(|l| escape(l)).collect()
        };
        let rewritten: Vec<String> = t
            .rewritten
            .iter()
            .map(|r| escape(&format!("{} {}", r.kind, r.name)))
            .collect();
        let join = |v: Vec<String>| {
            if v.is_empty() {
                "-".to_owned()
            } else {
                v.join("<br>")
            }
        };
        writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} |",
            i + 1,
            escape(&t.statement),
            status_text(t),
            took(t),
            join(locks),
            join(rewritten),
            escape(&decision_text(t)),
        )?;
    }
    details(report, out, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lock(locktype: &str, mode: &str, object: &str) -> Lock {
        Lock {
            locktype: locktype.to_owned(),
            mode: mode.to_owned(),
            object: object.to_owned(),
            kind: if locktype == "relation" {
                "table"
            } else {
                locktype
            }
            .to_owned(),
            blocks_reads: super::super::snapshot::blocks_reads(mode) && locktype == "relation",
            blocks_writes: super::super::snapshot::blocks_writes(mode) && locktype == "relation",
            key: String::new(),
        }
    }

    #[test]
    fn relation_locks_are_listed_and_object_locks_summed() {
        let lines = lock_lines(&[
            lock("relation", "AccessExclusiveLock", "public.t"),
            lock("object", "AccessExclusiveLock", "pg_trigger oid 1"),
            lock("object", "AccessExclusiveLock", "pg_trigger oid 2"),
            lock("object", "AccessExclusiveLock", "pg_type oid 3 (dropped)"),
            lock("advisory", "ExclusiveLock", "key 0, 42"),
            lock("object", "ExclusiveLock", "pg_type mood"),
            lock("relation", "ShareLock", "public.u"),
        ]);
        assert_eq!(
            lines,
            [
                "AccessExclusiveLock on table public.t [blocks reads+writes]",
                "advisory ExclusiveLock key 0, 42",
                "ShareLock on table public.u [blocks writes]",
                "object AccessExclusiveLock: pg_trigger ×2, pg_type",
                "object ExclusiveLock: pg_type",
            ]
        );
    }

    #[test]
    fn markdown_cells_cannot_break_the_table() {
        assert_eq!(escape("a | b\nc"), "a \\| b c");
        assert_eq!(escape("<script>"), "&lt;script&gt;");
        assert_eq!(cut("abcdef", 4), "abc…");
        assert_eq!(cut("abc", 4), "abc");
    }
}

//! What a running backfill shows: a progress bar (rows, rows/s, ETA) on a terminal, plain
//! lines every few seconds otherwise (CI logs, `nohup`), on standard error. The ETA comes from
//! the planner's estimate of the matching rows left at the start (EXPLAIN, no scan), so it is
//! as good as the table's statistics; the bar grows when the estimate was short.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// `--progress`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ProgressMode {
    /// A bar when standard error is a terminal, plain lines otherwise.
    Auto,
    /// A bar (indicatif draws it only on a terminal).
    Bar,
    /// Plain lines every `--report-every`.
    Plain,
    /// Only the summary.
    None,
}

pub(super) enum Reporter {
    Bar(ProgressBar),
    Plain {
        table: String,
        estimate: Option<u64>,
        every: Duration,
        started: Instant,
        last: Instant,
        rows: u64,
        batches: u64,
    },
    Quiet,
}

impl Reporter {
    pub(super) fn new(
        mode: ProgressMode,
        table: &str,
        estimate: Option<u64>,
        every: Duration,
        batches_before: u64,
    ) -> Reporter {
        let bar = match mode {
            ProgressMode::Auto => std::io::stderr().is_terminal(),
            ProgressMode::Bar => true,
            ProgressMode::Plain => false,
            ProgressMode::None => return Reporter::Quiet,
        };
        if batches_before > 0 {
            eprintln!(
                "backfill of {table}: resuming after {batches_before} batches done by an earlier run"
            );
        }
        if bar {
            let pb = ProgressBar::with_draw_target(estimate, ProgressDrawTarget::stderr());
            let style = ProgressStyle::with_template(
                "{prefix} [{elapsed_precise}] {wide_bar} {human_pos}/{human_len} rows ({rate}, ETA {eta})",
            )
            .map(|s| {
                s.with_key(
                    "rate",
                    |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                        let _ = write!(w, "{:.0} rows/s", state.per_sec());
                    },
                )
            })
            .unwrap_or_else(|_| ProgressStyle::default_bar());
            pb.set_style(style);
            pb.set_prefix(table.to_owned());
            Reporter::Bar(pb)
        } else {
            let now = Instant::now();
            Reporter::Plain {
                table: table.to_owned(),
                estimate,
                every,
                started: now,
                last: now,
                rows: 0,
                batches: 0,
            }
        }
    }

    pub(super) fn advance(&mut self, rows: u64) {
        match self {
            Reporter::Bar(pb) => {
                pb.inc(rows);
                if pb.length().is_some_and(|len| pb.position() > len) {
                    pb.set_length(pb.position());
                }
            }
            Reporter::Plain {
                table,
                estimate,
                every,
                started,
                last,
                rows: done,
                batches,
            } => {
                *done += rows;
                *batches += 1;
                if last.elapsed() >= *every {
                    *last = Instant::now();
                    let secs = started.elapsed().as_secs_f64();
                    let rate = if secs > 0.0 { *done as f64 / secs } else { 0.0 };
                    let mut line = format!(
                        "backfill of {table}: {done} rows in {batches} batches, {rate:.0} rows/s"
                    );
                    if let Some(total) = *estimate
                        && rate > 0.0
                    {
                        let left = total.saturating_sub(*done);
                        line.push_str(&format!(
                            ", about {left} left (planner estimate), ETA {}s",
                            (left as f64 / rate).ceil()
                        ));
                    }
                    eprintln!("{line}");
                }
            }
            Reporter::Quiet => {}
        }
    }

    /// A line that is not progress (a retry, a wait for replicas).
    pub(super) fn note(&self, line: &str) {
        match self {
            Reporter::Bar(pb) => pb.println(line),
            Reporter::Plain { .. } => eprintln!("{line}"),
            Reporter::Quiet => {}
        }
    }

    pub(super) fn finish(&mut self) {
        if let Reporter::Bar(pb) = self {
            pb.finish_and_clear();
        }
    }
}

//! Prometheus metrics: what ddlgate does, for operators. Every metric is defined here — name,
//! kind, unit and HELP text in `DEFS`, its label sets registered once below — and recorded
//! through the handles where the event happens (`handle.increment(1)`); `/metrics` only
//! renders.
//!
//! Each proxy instance owns its own `metrics-exporter-prometheus` recorder (not the process-wide
//! global one), so several instances in one process — the integration tests — never mix their
//! numbers. The handles are grouped by who records them: [`Metrics`] (latency, sessions, the
//! guard's histograms, the lock monitor), [`Counters`] (the analysis hook and the lock guard),
//! [`DecisionCounters`] (policy decisions) and [`ConnectionCounters`] (accept, admission,
//! cancels); all are registered on the instance's recorder. Label sets are bounded and
//! registered up front (statement class, understood-by, rule × action, reason), so a counter
//! that never moved is exposed as 0.
//!
//! Every name is prefixed `ddlgate_`; label values are bounded sets (statement kind, outcome,
//! rule id, action, transaction state, reason) — never SQL text, table or user names. Units are
//! given to the recorder for documentation only: the exporter's unit suffix is off, so names
//! are exactly those below.
//!
//! Reading back (tests, `/status`): [`Metrics::value`] and the `value` of the counter groups
//! read a number from the instance's own exposition, i.e. what a scrape would see.
//!
//! Histogram buckets: statement latency and its upstream share from 100 µs (a proxy hop on
//! localhost costs tens of microseconds) to 30 s; lock waits, DDL execution, queue waits and
//! dangerous-lock hold times from 10 ms to 10 min.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use metrics::{
    Counter, Gauge, Histogram, Key, KeyName, Label, Level, Metadata, Recorder, SharedString, Unit,
};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};

use crate::policy::Decision;
use crate::rules::{Action, RULES};
use crate::sql::prefilter::StatementClass;
use crate::sql::statement::Understood;

/// What a definition registers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// One metric as operators see it: exposition name, kind, unit and HELP text.
#[derive(Debug)]
struct Def {
    name: &'static str,
    kind: Kind,
    unit: Unit,
    help: &'static str,
}

const fn def(name: &'static str, kind: Kind, unit: Unit, help: &'static str) -> Def {
    Def {
        name,
        kind,
        unit,
        help,
    }
}

use Kind::{Counter as C, Gauge as G, Histogram as H};
use Unit::{Count, Seconds};

/// Every metric ddlgate exposes. Registering a name missing here is a bug (debug assertion),
/// and a test checks every exposed name has its HELP line.
#[rustfmt::skip]
const DEFS: &[Def] = &[
    // Traffic and latency, per protocol unit.
    def("ddlgate_statement_duration_seconds", H, Seconds, "Time from the client's message to the ReadyForQuery ddlgate forwards, by unit kind: what the client sees through ddlgate."),
    def("ddlgate_statement_upstream_seconds", H, Seconds, "The upstream's share of a unit's time, from the moment the message is written to the upstream socket."),
    def("ddlgate_proxy_overhead_seconds", H, Seconds, "ddlgate's own share of a unit's time before forwarding (decoding, analysis, waiting for the server to be idle before deciding a DDL)."),
    def("ddlgate_statements_completed_total", C, Count, "Protocol units (a Query, or the messages up to a Sync) completed, by kind and outcome."),
    def("ddlgate_statements_total", C, Count, "Statements seen by the analysis hook, by prefilter class."),
    def("ddlgate_sessions", G, Count, "Authenticated sessions by transaction state."),
    // Connections.
    def("ddlgate_connections_accepted_total", C, Count, "Client connections accepted."),
    def("ddlgate_connections_active", G, Count, "Client connections open now."),
    def("ddlgate_connections_rejected_total", C, Count, "Client connections refused or closed before their session began, by reason."),
    def("ddlgate_connections_unauthenticated", G, Count, "Connections holding one of limits.max_unauthenticated (not logged in yet), as of the scrape."),
    def("ddlgate_connections_authenticated", G, Count, "Sessions holding one of limits.max_clients, as of the scrape."),
    def("ddlgate_cancels_forwarded_total", C, Count, "CancelRequests forwarded to the upstream for a client."),
    def("ddlgate_cancels_on_client_loss_total", C, Count, "Statements cancelled upstream because their client vanished mid-statement."),
    def("ddlgate_steady_relay_handoffs_total", C, Count, "Sessions handed to the steady relay (to=\"steady\") and back to their event loop (to=\"loop\"): a DDL to decide, a large statement, the end of the session, a shutdown."),
    // Analysis and policy.
    def("ddlgate_ddl_understood_total", C, Count, "DDL candidates by how they were understood: sqlparser, the fallback classifier, or not at all."),
    def("ddlgate_ddl_decisions_total", C, Count, "Policy verdicts per rule and action."),
    def("ddlgate_ddl_decisions_effective_total", C, Count, "DDL statements by the action finally taken."),
    def("ddlgate_overrides_total", C, Count, "Verdicts changed by an override comment, per rule."),
    def("ddlgate_invalid_overrides_total", C, Count, "Override comments refused (unknown rule, no reason, not allowed)."),
    def("ddlgate_rewrite_failures_total", C, Count, "Rewrites refused after re-parsing or re-checking (the statement was blocked instead)."),
    def("ddlgate_messages_analysed_total", C, Count, "Query and Parse messages whose SQL the analysis hook split and classified, by source."),
    def("ddlgate_multi_statement_queries_total", C, Count, "Simple Queries that carried more than one statement (PostgreSQL runs them as one implicit transaction)."),
    def("ddlgate_extended_units_total", C, Count, "Extended-protocol units (the messages up to a Sync) completed."),
    def("ddlgate_pipelined_units_total", C, Count, "Extended-protocol units that ran more than one Execute (a pipeline: one implicit transaction)."),
    def("ddlgate_backfill_estimates_total", C, Count, "UPDATE/DELETE statements the backfill guard looked at, by outcome: estimated (EXPLAIN answered), bound (EXPLAIN answered, planned with the parameter values of the client's Bind), failed (EXPLAIN failed: decided without an estimate), parameters (not examined: a statement with parameters whose Bind could not be examined)."),
    // The audit log.
    def("ddlgate_audit_records_total", C, Count, "Audit records queued for the writer (written), or dropped because the writer's queue was full (dropped)."),
    def("ddlgate_journal_records_total", C, Count, "Undo journal entries written to the database (written), or not written because the journal write failed (failed: audit log only)."),
    // The lock guard and the per-table queue.
    def("ddlgate_guard_runs_total", C, Count, "Statements run under the lock guard."),
    def("ddlgate_lock_retries_total", C, Count, "Guarded attempts retried after a lock timeout."),
    def("ddlgate_lock_budget_exhausted_total", C, Count, "Guarded statements that spent their attempt or time budget."),
    def("ddlgate_lock_wait_seconds", H, Seconds, "Per DDL attempt that waited for its lock and gave up: how long it waited."),
    def("ddlgate_ddl_execution_seconds", H, Seconds, "Duration of the guarded DDL attempt that ran."),
    def("ddlgate_dangerous_lock_held_seconds", H, Seconds, "How long a DDL transaction held SHARE or a stronger table lock."),
    def("ddlgate_ddl_queue_depth", G, Count, "DDL statements waiting for their turn on a table, in total."),
    def("ddlgate_ddl_queue_wait_seconds", H, Seconds, "How long a DDL statement waited for its turn on a table."),
    def("ddlgate_ddl_queue_waits_total", C, Count, "DDL statements that had to wait for another DDL on the same table."),
    def("ddlgate_ddl_queue_timeouts_total", C, Count, "DDL statements that gave up waiting for their turn on a table."),
    // The lock monitor.
    def("ddlgate_lock_monitor_waiting_sessions", G, Count, "Sessions waiting for a heavyweight lock, server-wide, at the last sample."),
    def("ddlgate_lock_monitor_oldest_wait_seconds", G, Seconds, "The longest current lock wait, server-wide, at the last sample."),
    def("ddlgate_lock_monitor_blocked_by_ddl_sessions", G, Count, "Waiting sessions held up by a session holding or requesting a DDL-strength lock, at the last sample."),
    def("ddlgate_lock_monitor_up", G, Count, "1 when the lock monitor's last sample succeeded, else 0."),
    def("ddlgate_lock_monitor_samples_total", C, Count, "Lock monitor samples, by outcome."),
];

/// Registers handles on one instance's recorder, checking each name is defined in [`DEFS`].
struct Registry<'a>(&'a PrometheusRecorder);

impl Registry<'_> {
    fn key(kind: Kind, name: &'static str, labels: &[(&'static str, &'static str)]) -> Key {
        debug_assert!(
            DEFS.iter().any(|d| d.name == name && d.kind == kind),
            "{name} is not defined in metrics::DEFS as a {kind:?}"
        );
        Key::from_parts(
            name,
            labels
                .iter()
                .map(|(k, v)| Label::new(*k, *v))
                .collect::<Vec<_>>(),
        )
    }

    fn counter(&self, name: &'static str, labels: &[(&'static str, &'static str)]) -> Counter {
        self.0.register_counter(&Self::key(C, name, labels), &META)
    }

    fn gauge(&self, name: &'static str, labels: &[(&'static str, &'static str)]) -> Gauge {
        self.0.register_gauge(&Self::key(G, name, labels), &META)
    }

    fn hist(&self, name: &'static str, labels: &[(&'static str, &'static str)]) -> Histogram {
        self.0
            .register_histogram(&Self::key(H, name, labels), &META)
    }
}

/// Reads one sample from an exposition: the value of `name` with exactly `labels` (in any
/// order), 0 when absent.
fn read(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    let mut want: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    want.sort();
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .find(|(series, _)| {
            let (n, l) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.strip_suffix('}').unwrap_or(rest)),
                None => (*series, ""),
            };
            let mut have: Vec<String> = l
                .split(',')
                .filter(|p| !p.is_empty())
                .map(str::to_owned)
                .collect();
            have.sort();
            n == name && have == want
        })
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0.0)
}

/// A way back to the numbers of one instance (the exporter's exposition and the counters kept
/// per event loop), for tests and `/status`.
#[derive(Clone)]
struct Reader {
    handle: PrometheusHandle,
    loops: std::sync::Arc<LoopCounters>,
}

impl Reader {
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let mut text = self.handle.render();
        self.loops.render(&mut text);
        read(&text, name, labels)
    }
}

/// The counter families recorded per message or per protocol unit. Like the unit histograms
/// they are kept per event loop and rendered by ddlgate, not by the exporter (whose counters
/// are one atomic each, shared by every loop).
const LOOP_COUNTER_FAMILIES: [&str; 5] = [
    "ddlgate_statements_completed_total",
    "ddlgate_extended_units_total",
    "ddlgate_pipelined_units_total",
    "ddlgate_messages_analysed_total",
    "ddlgate_statements_total",
];

/// The HELP text of a family in [`DEFS`] (empty for a name not listed there).
fn help_of(name: &str) -> &'static str {
    DEFS.iter().find(|d| d.name == name).map_or("", |d| d.help)
}

/// Most series [`LoopCounters`] holds.
const LOOP_SERIES_MAX: usize = 16;

/// One thread's values of every loop counter series, on cache lines of their own.
#[repr(align(128))]
#[derive(Default)]
struct CounterShard {
    values: [AtomicU64; LOOP_SERIES_MAX],
}

/// The series of [`LOOP_COUNTER_FAMILIES`], each family's series next to each other, and their
/// values per recording thread ([`set_shard`]).
struct LoopCounters {
    series: Vec<(&'static str, Vec<(&'static str, &'static str)>)>,
    shards: Box<[CounterShard]>,
}

impl LoopCounters {
    fn new() -> LoopCounters {
        let mut series = Vec::new();
        for kind in KINDS {
            for outcome in ["ok", "error"] {
                series.push((
                    LOOP_COUNTER_FAMILIES[0],
                    vec![("kind", kind.as_str()), ("outcome", outcome)],
                ));
            }
        }
        series.push((LOOP_COUNTER_FAMILIES[1], Vec::new()));
        series.push((LOOP_COUNTER_FAMILIES[2], Vec::new()));
        for source in ["query", "parse"] {
            series.push((LOOP_COUNTER_FAMILIES[3], vec![("source", source)]));
        }
        for class in StatementClass::ALL {
            series.push((LOOP_COUNTER_FAMILIES[4], vec![("class", class.as_str())]));
        }
        assert!(
            series.len() <= LOOP_SERIES_MAX,
            "too many loop counter series"
        );
        LoopCounters {
            series,
            shards: (0..SHARDS).map(|_| CounterShard::default()).collect(),
        }
    }

    /// Appends every family in the text exposition format.
    fn render(&self, out: &mut String) {
        use std::fmt::Write;
        let mut family = "";
        for (i, (name, labels)) in self.series.iter().enumerate() {
            if *name != family {
                if !family.is_empty() {
                    out.push('\n');
                }
                family = name;
                let _ = writeln!(out, "# HELP {name} {}", help_of(name));
                let _ = writeln!(out, "# TYPE {name} counter");
            }
            let value: u64 = self
                .shards
                .iter()
                .map(|s| s.values[i].load(Ordering::Relaxed))
                .fold(0, u64::wrapping_add);
            out.push_str(name);
            if !labels.is_empty() {
                out.push('{');
                for (j, (k, v)) in labels.iter().enumerate() {
                    if j > 0 {
                        out.push(',');
                    }
                    let _ = write!(out, "{k}=\"{v}\"");
                }
                out.push('}');
            }
            let _ = writeln!(out, " {value}");
        }
        out.push('\n');
    }
}

/// One series of a loop counter family: adds go to the recording thread's shard.
#[derive(Clone)]
pub struct LoopCounter {
    all: std::sync::Arc<LoopCounters>,
    index: usize,
}

impl LoopCounter {
    fn of(all: &std::sync::Arc<LoopCounters>, name: &str, labels: &[(&str, &str)]) -> LoopCounter {
        let index = all
            .series
            .iter()
            .position(|(n, l)| *n == name && l.as_slice() == labels);
        // The series are constants registered above; a miss is a programming error caught by
        // the unit tests, never by traffic.
        let index = index.unwrap_or_else(|| panic!("{name} {labels:?} is not a loop counter"));
        LoopCounter {
            all: all.clone(),
            index,
        }
    }

    pub fn increment(&self, n: u64) {
        let shard = SHARD.with(std::cell::Cell::get);
        self.all.shards[shard % SHARDS].values[self.index].fetch_add(n, Ordering::Relaxed);
    }
}

/// Connection-level counters: accept, admission, login timeouts, cancels.
pub struct ConnectionCounters {
    /// `ddlgate_connections_accepted_total`.
    pub accepted: Counter,
    /// `ddlgate_connections_active`: incremented when a session starts, decremented when it
    /// ends.
    pub active: Gauge,
    /// `…_rejected_total{reason="too_many_clients"}`: clients refused FATAL 53300 because
    /// `limits.max_clients` authenticated sessions were running.
    pub rejected_too_many: Counter,
    /// `…{reason="too_many_unauthenticated"}`: connections refused because
    /// `limits.max_unauthenticated` connections were logging in and none of them could be
    /// evicted (FATAL 53300, or closed at once past the bound on refusals in progress).
    pub rejected_unauthenticated: Counter,
    /// `…{reason="evicted_before_startup"}`: connections closed to make room for a newer one
    /// while they had not sent their startup packet yet.
    pub evicted_before_startup: Counter,
    /// `…{reason="startup_timeout"}`: connections closed for not sending their startup packet
    /// within `limits.startup_timeout_ms`.
    pub startup_timeouts: Counter,
    /// `…{reason="login_timeout"}`: connections closed for not finishing authentication within
    /// `limits.login_timeout_ms`.
    pub login_timeouts: Counter,
    /// `…{reason="upstream_unreachable"}`.
    pub upstream_connect_failures: Counter,
    /// `ddlgate_cancels_forwarded_total`.
    pub cancels_forwarded: Counter,
    /// `ddlgate_cancels_on_client_loss_total`: statements cancelled upstream because their
    /// client vanished mid-statement.
    pub cancels_on_client_loss: Counter,
    /// `ddlgate_steady_relay_handoffs_total{to="steady"}`: sessions handed to the steady relay.
    pub to_steady: Counter,
    /// `…{to="loop"}`: sessions handed back to their event loop.
    pub to_loop: Counter,
    reader: Reader,
}

impl ConnectionCounters {
    /// Registers the handles on `metrics`' recorder.
    pub fn new(metrics: &Metrics) -> ConnectionCounters {
        let r = Registry(&metrics.recorder);
        let rejected =
            |reason| r.counter("ddlgate_connections_rejected_total", &[("reason", reason)]);
        ConnectionCounters {
            accepted: r.counter("ddlgate_connections_accepted_total", &[]),
            active: r.gauge("ddlgate_connections_active", &[]),
            rejected_too_many: rejected("too_many_clients"),
            rejected_unauthenticated: rejected("too_many_unauthenticated"),
            evicted_before_startup: rejected("evicted_before_startup"),
            startup_timeouts: rejected("startup_timeout"),
            login_timeouts: rejected("login_timeout"),
            upstream_connect_failures: rejected("upstream_unreachable"),
            cancels_forwarded: r.counter("ddlgate_cancels_forwarded_total", &[]),
            cancels_on_client_loss: r.counter("ddlgate_cancels_on_client_loss_total", &[]),
            to_steady: r.counter("ddlgate_steady_relay_handoffs_total", &[("to", "steady")]),
            to_loop: r.counter("ddlgate_steady_relay_handoffs_total", &[("to", "loop")]),
            reader: metrics.reader.clone(),
        }
    }

    /// The current value of a metric of this instance (see [`Metrics::value`]).
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.reader.value(name, labels)
    }

    /// `ddlgate_connections_rejected_total{reason}`.
    pub fn rejected(&self, reason: &str) -> u64 {
        self.value("ddlgate_connections_rejected_total", &[("reason", reason)]) as u64
    }
}

/// On a recorder of its own (unit tests).
impl Default for ConnectionCounters {
    fn default() -> Self {
        ConnectionCounters::new(&Metrics::new())
    }
}

impl std::fmt::Debug for ConnectionCounters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionCounters").finish_non_exhaustive()
    }
}

/// Everything the analysis hook and the lock guard count.
pub struct Counters {
    /// `ddlgate_messages_analysed_total{source="query"}`: simple Query messages analysed.
    pub queries: LoopCounter,
    /// `ddlgate_messages_analysed_total{source="parse"}`: Parse messages analysed.
    pub parses: LoopCounter,
    /// `ddlgate_multi_statement_queries_total`: simple Queries that carried more than one
    /// statement (one implicit transaction).
    pub multi_statement_queries: Counter,
    /// `ddlgate_pipelined_units_total`: extended-protocol units (messages up to a Sync) that ran
    /// more than one Execute, i.e. pipelines, which PostgreSQL also runs as one implicit
    /// transaction.
    pub pipelined_units: LoopCounter,
    /// `ddlgate_extended_units_total`: extended-protocol units completed (Syncs seen).
    pub extended_units: LoopCounter,
    /// `ddlgate_statements_total{class}`, indexed by `StatementClass::index`.
    pub statements: [LoopCounter; StatementClass::ALL.len()],
    /// `ddlgate_ddl_understood_total{by}`, indexed by [`understood_index`]: parsed by
    /// sqlparser, recognised by the fallback classifier, or not understood at all (the
    /// `unparsed-ddl` case the policy fails closed on).
    pub ddl_understood: [Counter; 3],
    /// Policy decisions per rule and action, overrides, invalid overrides.
    pub decisions: DecisionCounters,
    /// `ddlgate_rewrite_failures_total`: rewrites refused after re-parsing or re-checking (the
    /// statement was blocked instead).
    pub rewrite_failures: Counter,
    /// The lock guard.
    pub guard: GuardCounters,
    /// The backfill guard.
    pub backfill: BackfillCounters,
    reader: Reader,
}

/// What the backfill guard did: `ddlgate_backfill_estimates_total{outcome}`.
pub struct BackfillCounters {
    /// The planner answered the EXPLAIN.
    pub estimated: Counter,
    /// The EXPLAIN failed (the statement's own error, most often): decided without an estimate.
    pub failed: Counter,
    /// The planner answered the EXPLAIN bound with the client's parameter values.
    pub bound: Counter,
    /// Not examined: a statement with parameters whose values could not be bound (not a unit
    /// `[Parse] Bind [Describe] Execute Sync` at a statement boundary, values beyond
    /// `limits.max_statement_bytes`, a prepared statement not kept).
    pub parameters: Counter,
}

/// What the lock guard did.
pub struct GuardCounters {
    /// `ddlgate_guard_runs_total`: queries run under the guard.
    pub runs: Counter,
    /// `ddlgate_lock_retries_total`: attempts retried after a lock timeout.
    pub retries: Counter,
    /// `ddlgate_lock_budget_exhausted_total`: queries that spent their attempt or time budget.
    pub exhausted: Counter,
    /// `ddlgate_ddl_queue_waits_total`: queries that had to wait for another DDL on the same
    /// table.
    pub queue_waits: Counter,
    /// `ddlgate_ddl_queue_timeouts_total`: queries that gave up waiting for their turn.
    pub queue_timeouts: Counter,
}

/// The `by` label of `ddlgate_ddl_understood_total`, in [`understood_index`] order.
const UNDERSTOOD_BY: [&str; 3] = ["sqlparser", "classifier", "unparsed"];

/// Index into `Counters::ddl_understood`.
pub fn understood_index(u: Understood) -> usize {
    match u {
        Understood::Parsed => 0,
        Understood::Fallback => 1,
        Understood::Unknown => 2,
    }
}

impl Counters {
    /// Registers the handles on `metrics`' recorder.
    pub fn new(metrics: &Metrics) -> Counters {
        let r = Registry(&metrics.recorder);
        Counters {
            queries: metrics
                .loop_counter("ddlgate_messages_analysed_total", &[("source", "query")]),
            parses: metrics.loop_counter("ddlgate_messages_analysed_total", &[("source", "parse")]),
            multi_statement_queries: r.counter("ddlgate_multi_statement_queries_total", &[]),
            pipelined_units: metrics.loop_counter("ddlgate_pipelined_units_total", &[]),
            extended_units: metrics.loop_counter("ddlgate_extended_units_total", &[]),
            statements: StatementClass::ALL.map(|c| {
                metrics.loop_counter("ddlgate_statements_total", &[("class", c.as_str())])
            }),
            ddl_understood: UNDERSTOOD_BY
                .map(|by| r.counter("ddlgate_ddl_understood_total", &[("by", by)])),
            decisions: DecisionCounters::new(metrics),
            rewrite_failures: r.counter("ddlgate_rewrite_failures_total", &[]),
            guard: GuardCounters {
                runs: r.counter("ddlgate_guard_runs_total", &[]),
                retries: r.counter("ddlgate_lock_retries_total", &[]),
                exhausted: r.counter("ddlgate_lock_budget_exhausted_total", &[]),
                queue_waits: r.counter("ddlgate_ddl_queue_waits_total", &[]),
                queue_timeouts: r.counter("ddlgate_ddl_queue_timeouts_total", &[]),
            },
            backfill: {
                let outcome = |o| r.counter("ddlgate_backfill_estimates_total", &[("outcome", o)]);
                BackfillCounters {
                    estimated: outcome("estimated"),
                    failed: outcome("failed"),
                    bound: outcome("bound"),
                    parameters: outcome("parameters"),
                }
            },
            reader: metrics.reader.clone(),
        }
    }

    /// The current value of a metric of this instance (see [`Metrics::value`]).
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        self.reader.value(name, labels) as u64
    }

    /// `ddlgate_statements_total{class}`.
    pub fn statements(&self, class: StatementClass) -> u64 {
        self.reader
            .value("ddlgate_statements_total", &[("class", class.as_str())]) as u64
    }

    /// `ddlgate_ddl_understood_total{by}`.
    pub fn ddl_understood(&self, u: Understood) -> u64 {
        self.reader.value(
            "ddlgate_ddl_understood_total",
            &[("by", UNDERSTOOD_BY[understood_index(u)])],
        ) as u64
    }
}

/// On a recorder of its own (`ddlgate check`, benchmarks, unit tests).
impl Default for Counters {
    fn default() -> Self {
        Counters::new(&Metrics::new())
    }
}

impl std::fmt::Debug for Counters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Counters").finish_non_exhaustive()
    }
}

/// What the audit log did with its records: `ddlgate_audit_records_total{outcome}`.
pub struct AuditCounters {
    /// Queued for the writer.
    pub written: Counter,
    /// Dropped: the writer's queue was full.
    pub dropped: Counter,
    /// Undo journal entries written to the user's database.
    pub journal_written: Counter,
    /// Undo journal writes that failed (the entries went to the audit log only).
    pub journal_failed: Counter,
}

impl AuditCounters {
    /// Registers the handles on `metrics`' recorder.
    pub fn new(metrics: &Metrics) -> AuditCounters {
        let r = Registry(&metrics.recorder);
        let outcome = |o| r.counter("ddlgate_audit_records_total", &[("outcome", o)]);
        AuditCounters {
            written: outcome("written"),
            dropped: outcome("dropped"),
            journal_written: r.counter("ddlgate_journal_records_total", &[("outcome", "written")]),
            journal_failed: r.counter("ddlgate_journal_records_total", &[("outcome", "failed")]),
        }
    }
}

impl std::fmt::Debug for AuditCounters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditCounters").finish_non_exhaustive()
    }
}

/// Every action, in `Action as usize` order (the index of the per-action handles).
const ACTIONS: [Action; 4] = [Action::Allow, Action::Warn, Action::Rewrite, Action::Block];

/// Decisions counted per rule and action, and overrides per rule: bounded label sets (rule ids
/// are static), every pair registered up front.
pub struct DecisionCounters {
    /// `ddlgate_ddl_decisions_total{rule,action}`: `[rule index in RULES][action]`.
    per_rule: Vec<[Counter; 4]>,
    /// `ddlgate_overrides_total{rule}`.
    overrides: Vec<Counter>,
    /// `ddlgate_invalid_overrides_total`.
    invalid_overrides: Counter,
    /// `ddlgate_ddl_decisions_effective_total{action}`: statements by effective action.
    effective: [Counter; 4],
    reader: Reader,
}

fn rule_index(id: &str) -> Option<usize> {
    RULES.iter().position(|r| r.id == id)
}

impl DecisionCounters {
    /// Registers the handles on `metrics`' recorder.
    pub fn new(metrics: &Metrics) -> DecisionCounters {
        let r = Registry(&metrics.recorder);
        DecisionCounters {
            per_rule: RULES
                .iter()
                .map(|rule| {
                    ACTIONS.map(|a| {
                        r.counter(
                            "ddlgate_ddl_decisions_total",
                            &[("rule", rule.id), ("action", a.as_str())],
                        )
                    })
                })
                .collect(),
            overrides: RULES
                .iter()
                .map(|rule| r.counter("ddlgate_overrides_total", &[("rule", rule.id)]))
                .collect(),
            invalid_overrides: r.counter("ddlgate_invalid_overrides_total", &[]),
            effective: ACTIONS.map(|a| {
                r.counter(
                    "ddlgate_ddl_decisions_effective_total",
                    &[("action", a.as_str())],
                )
            }),
            reader: metrics.reader.clone(),
        }
    }

    /// Counts one decision: its effective action, an invalid override, and each verdict.
    pub fn record(&self, d: &Decision) {
        self.effective[d.effective as usize].increment(1);
        if d.error.is_some() {
            self.invalid_overrides.increment(1);
        }
        for v in &d.verdicts {
            if let Some(i) = rule_index(v.finding.rule) {
                self.per_rule[i][v.action as usize].increment(1);
                if v.overridden.is_some() {
                    self.overrides[i].increment(1);
                }
            }
        }
    }

    /// `ddlgate_ddl_decisions_total{rule,action}` (0 for an unknown rule).
    pub fn rule_action(&self, rule_id: &str, action: Action) -> u64 {
        self.reader.value(
            "ddlgate_ddl_decisions_total",
            &[("rule", rule_id), ("action", action.as_str())],
        ) as u64
    }

    /// `ddlgate_overrides_total{rule}`.
    pub fn overrides(&self, rule_id: &str) -> u64 {
        self.reader
            .value("ddlgate_overrides_total", &[("rule", rule_id)]) as u64
    }

    /// `ddlgate_ddl_decisions_effective_total{action}`.
    pub fn effective(&self, action: Action) -> u64 {
        self.reader.value(
            "ddlgate_ddl_decisions_effective_total",
            &[("action", action.as_str())],
        ) as u64
    }
}

/// On a recorder of its own (unit tests).
impl Default for DecisionCounters {
    fn default() -> Self {
        DecisionCounters::new(&Metrics::new())
    }
}

impl std::fmt::Debug for DecisionCounters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecisionCounters").finish_non_exhaustive()
    }
}

const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0,
];
/// Dense around the default 2 s `lock_timeout`, where most lock-wait observations land.
/// ddlgate's own share of a statement's latency: from a few microseconds (a forwarded
/// message) to tens of milliseconds (a DDL decided with a catalog lookup).
const OVERHEAD_BUCKETS: &[f64] = &[
    0.000005, 0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
    0.025, 0.05,
];
const LOCK_BUCKETS: &[f64] = &[
    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 1.5, 2.0, 2.25, 2.5, 3.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
    600.0,
];

/// What kind of protocol unit a statement latency belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnitKind {
    /// Holds at least one DDL candidate.
    Ddl,
    /// Reads or writes rows (and holds no DDL).
    Dml,
    /// Transaction control and session settings only (BEGIN, COMMIT, SET, …), or nothing.
    Other,
}

impl UnitKind {
    /// The kind of one analysed Query or Parse, from the counts of its summary
    /// (`analysis::Summary::ddl_candidates` and `dml`).
    pub fn of(ddl_candidates: usize, dml: usize) -> UnitKind {
        if ddl_candidates > 0 {
            UnitKind::Ddl
        } else if dml > 0 {
            UnitKind::Dml
        } else {
            UnitKind::Other
        }
    }

    /// The kind of a unit made of this and `earlier` (extended protocol: several Parses before
    /// one Sync): DDL wins over DML, DML over the rest.
    pub fn merge(self, earlier: Option<UnitKind>) -> UnitKind {
        match (self, earlier) {
            (UnitKind::Ddl, _) | (_, Some(UnitKind::Ddl)) => UnitKind::Ddl,
            (UnitKind::Dml, _) | (_, Some(UnitKind::Dml)) => UnitKind::Dml,
            _ => UnitKind::Other,
        }
    }

    fn index(self) -> usize {
        self as usize
    }

    pub fn as_str(self) -> &'static str {
        match self {
            UnitKind::Ddl => "ddl",
            UnitKind::Dml => "dml",
            UnitKind::Other => "other",
        }
    }
}

const KINDS: [UnitKind; 3] = [UnitKind::Ddl, UnitKind::Dml, UnitKind::Other];

/// Transaction state of a session, for the sessions gauge.
pub const TX_STATES: [&str; 3] = ["idle", "in_transaction", "failed"];

/// One instance's metrics: its recorder, and the handles recorded by the session, the guard
/// and the lock monitor. The counter groups ([`Counters`], [`ConnectionCounters`]) are
/// registered on the same recorder by their own `new`.
pub struct Metrics {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    reader: Reader,
    /// `ddlgate_statement_duration_seconds{kind}`: from the client's message to the
    /// ReadyForQuery ddlgate forwards, as the client sees it through ddlgate.
    statement_seconds: UnitHistogram,
    /// `ddlgate_statement_upstream_seconds{kind}`: the upstream's share of it, from the moment
    /// the message is written to the upstream socket.
    upstream_seconds: UnitHistogram,
    /// `ddlgate_proxy_overhead_seconds{kind}`: the rest — ddlgate's own time before forwarding
    /// (decoding, analysis, waiting for the server to be idle before deciding a DDL).
    overhead_seconds: UnitHistogram,
    /// `ddlgate_statements_completed_total{kind,outcome}` per protocol unit, outcome ok/error.
    pub completed: [[LoopCounter; 2]; 3],
    /// The counter families kept per event loop.
    loops: std::sync::Arc<LoopCounters>,
    /// `ddlgate_sessions{tx_state}`.
    pub sessions: [Gauge; 3],
    /// `ddlgate_lock_wait_seconds`: per DDL attempt that waited for its lock and gave up.
    pub lock_wait_seconds: Histogram,
    /// `ddlgate_ddl_execution_seconds`: the attempt that ran.
    pub ddl_execution_seconds: Histogram,
    /// `ddlgate_dangerous_lock_held_seconds`: how long a DDL transaction held SHARE or stronger.
    pub dangerous_lock_held_seconds: Histogram,
    /// `ddlgate_ddl_queue_depth`: DDL statements waiting for their turn on a table, in total.
    pub queue_depth: Gauge,
    /// `ddlgate_ddl_queue_wait_seconds`.
    pub queue_wait_seconds: Histogram,
    /// `ddlgate_lock_monitor_waiting_sessions`: sessions waiting for a lock, server-wide.
    pub monitor_waiting: Gauge,
    /// `ddlgate_lock_monitor_oldest_wait_seconds`.
    pub monitor_oldest_wait: Gauge,
    /// `ddlgate_lock_monitor_blocked_by_ddl_sessions`.
    pub monitor_blocked_by_ddl: Gauge,
    /// `ddlgate_lock_monitor_up`: the last sample succeeded.
    pub monitor_up: Gauge,
    /// `ddlgate_lock_monitor_samples_total{outcome}`: ok, error.
    pub monitor_samples: [Counter; 2],
    /// `ddlgate_connections_unauthenticated` and `ddlgate_connections_authenticated`: slots in
    /// use, set at scrape time by [`Metrics::set_slots`] (a point-in-time reading of the
    /// admission semaphores, not a count of events).
    slots: [Gauge; 2],
    /// The same counts as the sessions gauge, readable (for `/status`).
    states: [AtomicI64; 3],
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

static META: Metadata<'static> = Metadata::new(module_path!(), Level::INFO, None);

impl Metrics {
    pub fn new() -> Metrics {
        // The per-unit latency histograms are ddlgate's own (`UnitHistogram`); the exporter's
        // are the guard's and the monitor's.
        let builder = PrometheusBuilder::new().set_buckets(LOCK_BUCKETS);
        // The bucket lists are constants and non-empty: building cannot fail; fall back to the
        // exporter's defaults (summaries) rather than panic if it ever did.
        let recorder = match builder {
            Ok(b) => b.build_recorder(),
            Err(_) => PrometheusBuilder::new().build_recorder(),
        };
        for d in DEFS.iter().filter(|d| {
            !UNIT_HISTOGRAMS.contains(&d.name) && !LOOP_COUNTER_FAMILIES.contains(&d.name)
        }) {
            let (name, unit, help) = (
                KeyName::from_const_str(d.name),
                Some(d.unit),
                SharedString::const_str(d.help),
            );
            match d.kind {
                Kind::Counter => recorder.describe_counter(name, unit, help),
                Kind::Gauge => recorder.describe_gauge(name, unit, help),
                Kind::Histogram => recorder.describe_histogram(name, unit, help),
            }
        }
        let handle = recorder.handle();
        let r = Registry(&recorder);
        let hist = |name, labels: &[(&'static str, &'static str)]| r.hist(name, labels);
        let statement_seconds =
            UnitHistogram::new("ddlgate_statement_duration_seconds", LATENCY_BUCKETS);
        let upstream_seconds =
            UnitHistogram::new("ddlgate_statement_upstream_seconds", LATENCY_BUCKETS);
        let overhead_seconds =
            UnitHistogram::new("ddlgate_proxy_overhead_seconds", OVERHEAD_BUCKETS);
        let loops = std::sync::Arc::new(LoopCounters::new());
        let completed = KINDS.map(|k| {
            ["ok", "error"].map(|o| {
                LoopCounter::of(
                    &loops,
                    "ddlgate_statements_completed_total",
                    &[("kind", k.as_str()), ("outcome", o)],
                )
            })
        });
        let sessions = TX_STATES.map(|s| r.gauge("ddlgate_sessions", &[("tx_state", s)]));
        Metrics {
            statement_seconds,
            upstream_seconds,
            overhead_seconds,
            completed,
            sessions,
            lock_wait_seconds: hist("ddlgate_lock_wait_seconds", &[]),
            ddl_execution_seconds: hist("ddlgate_ddl_execution_seconds", &[]),
            dangerous_lock_held_seconds: hist("ddlgate_dangerous_lock_held_seconds", &[]),
            queue_depth: r.gauge("ddlgate_ddl_queue_depth", &[]),
            queue_wait_seconds: hist("ddlgate_ddl_queue_wait_seconds", &[]),
            monitor_waiting: r.gauge("ddlgate_lock_monitor_waiting_sessions", &[]),
            monitor_oldest_wait: r.gauge("ddlgate_lock_monitor_oldest_wait_seconds", &[]),
            monitor_blocked_by_ddl: r.gauge("ddlgate_lock_monitor_blocked_by_ddl_sessions", &[]),
            monitor_up: r.gauge("ddlgate_lock_monitor_up", &[]),
            monitor_samples: ["ok", "error"]
                .map(|o| r.counter("ddlgate_lock_monitor_samples_total", &[("outcome", o)])),
            slots: [
                r.gauge("ddlgate_connections_unauthenticated", &[]),
                r.gauge("ddlgate_connections_authenticated", &[]),
            ],
            states: Default::default(),
            reader: Reader {
                handle: handle.clone(),
                loops: loops.clone(),
            },
            loops,
            recorder,
            handle,
        }
    }

    /// The handle of one series of a [`LOOP_COUNTER_FAMILIES`] family.
    fn loop_counter(&self, name: &str, labels: &[(&str, &str)]) -> LoopCounter {
        LoopCounter::of(&self.loops, name, labels)
    }

    /// Folds the histogram samples recorded since the last call into their buckets. The
    /// exporter buffers every sample until then, so this must run periodically whether or not
    /// anyone scrapes `/metrics` (the server's upkeep task does), or memory grows with traffic.
    pub fn run_upkeep(&self) {
        self.handle.run_upkeep();
    }

    /// Records one completed protocol unit: `total` from the client's message to the
    /// ReadyForQuery, `upstream` from the write to the upstream socket. Atomic adds only: no
    /// allocation, no clock read.
    pub fn unit_done(&self, kind: UnitKind, error: bool, total: Duration, upstream: Duration) {
        self.statement_seconds.record(kind, total);
        self.upstream_seconds.record(kind, upstream);
        self.overhead_seconds
            .record(kind, total.saturating_sub(upstream));
        self.completed[kind.index()][usize::from(error)].increment(1);
    }

    /// Moves a session between transaction states (`None`: not counted, i.e. before login or
    /// after the end).
    pub fn session_state(&self, from: Option<usize>, to: Option<usize>) {
        if from == to {
            return;
        }
        if let Some(i) = from {
            self.sessions[i].decrement(1.0);
            self.states[i].fetch_sub(1, Ordering::Relaxed);
        }
        if let Some(i) = to {
            self.sessions[i].increment(1.0);
            self.states[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Sessions by transaction state: idle, in transaction, failed.
    pub fn sessions_by_state(&self) -> [i64; 3] {
        self.states.each_ref().map(|s| s.load(Ordering::Relaxed))
    }

    /// `ddlgate_connections_unauthenticated` (holding one of `limits.max_unauthenticated`: not
    /// logged in yet) and `ddlgate_connections_authenticated` (holding one of
    /// `limits.max_clients`), as of now; set before each [`Metrics::render`]. The only values
    /// set at scrape time: they are readings of the admission semaphores, not events.
    pub fn set_slots(&self, unauthenticated: usize, authenticated: usize) {
        self.slots[0].set(unauthenticated as f64);
        self.slots[1].set(authenticated as f64);
    }

    /// The Prometheus text exposition. Every number in it was recorded where it happened.
    pub fn render(&self) -> String {
        let mut text = self.handle.render();
        self.loops.render(&mut text);
        for h in [
            &self.statement_seconds,
            &self.upstream_seconds,
            &self.overhead_seconds,
        ] {
            h.render(&mut text);
        }
        text
    }

    /// The current value of `name` with exactly `labels` in this instance's exposition (0 when
    /// absent): what a scrape would read. Renders the whole exposition; for tests and `/status`,
    /// not for the statement path.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.reader.value(name, labels)
    }
}

/// The histograms rendered by [`UnitHistogram`], not by the exporter.
const UNIT_HISTOGRAMS: [&str; 3] = [
    "ddlgate_statement_duration_seconds",
    "ddlgate_statement_upstream_seconds",
    "ddlgate_proxy_overhead_seconds",
];

/// A per-unit-kind latency histogram recorded on the statement path: fixed buckets of atomic
/// counts and a sum in nanoseconds, rendered by ddlgate itself. The exporter's histograms keep
/// every sample (with a timestamp) in a growing buffer until upkeep folds them: a clock read
/// per sample, and an allocation every few dozen samples. A completed unit records three of
/// these; here that is a handful of atomic adds.
struct UnitHistogram {
    name: &'static str,
    help: &'static str,
    /// Upper bounds in nanoseconds, ascending (every bound is a whole number of nanoseconds).
    bounds_ns: Vec<u64>,
    /// The same bounds as the exposition's `le` labels.
    labels: Vec<String>,
    /// One set of buckets per recording thread ([`set_shard`]): each event loop adds to its
    /// own cache lines, so sessions on different loops never contend for one counter.
    shards: Box<[Shard]>,
}

/// Most bounds a [`UnitHistogram`] has.
const MAX_BOUNDS: usize = 17;

/// Buckets apart: event loops beyond this many share one (still exact, only contended).
const SHARDS: usize = 16;

thread_local! {
    /// The shard the current thread records into: its event loop's, 0 for other threads.
    static SHARD: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Makes the current thread record the per-unit histograms and the loop counters
/// ([`LoopCounter`]) into shard `index` (each event loop thread takes its own at start).
pub fn set_shard(index: usize) {
    SHARD.with(|s| s.set(index % SHARDS));
}

/// One thread's buckets, on cache lines of their own.
#[repr(align(128))]
#[derive(Default)]
struct Shard {
    kinds: [KindBuckets; 3],
}

#[derive(Default)]
struct KindBuckets {
    /// The count of each bucket (not cumulative; the one after the last bound is `+Inf`).
    counts: [AtomicU64; MAX_BOUNDS + 1],
    sum_ns: AtomicU64,
}

impl UnitHistogram {
    fn new(name: &'static str, bounds: &[f64]) -> UnitHistogram {
        assert!(bounds.len() <= MAX_BOUNDS, "{name}: too many bounds");
        UnitHistogram {
            name,
            help: help_of(name),
            bounds_ns: bounds.iter().map(|b| (b * 1e9).round() as u64).collect(),
            labels: bounds.iter().map(|b| b.to_string()).collect(),
            shards: (0..SHARDS).map(|_| Shard::default()).collect(),
        }
    }

    fn record(&self, kind: UnitKind, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        // The first bucket whose bound is at least the value (`le`: less or equal). Scanned
        // from the smallest: most units land in the first few buckets.
        let i = self
            .bounds_ns
            .iter()
            .position(|&b| b >= ns)
            .unwrap_or(self.bounds_ns.len());
        let shard = SHARD.with(std::cell::Cell::get);
        let k = &self.shards[shard % SHARDS].kinds[kind.index()];
        k.counts[i].fetch_add(1, Ordering::Relaxed);
        k.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// Appends the family in the text exposition format.
    fn render(&self, out: &mut String) {
        use std::fmt::Write;
        let name = self.name;
        let _ = writeln!(out, "# HELP {name} {}", self.help);
        let _ = writeln!(out, "# TYPE {name} histogram");
        for kind in KINDS {
            let shards = self.shards.iter().map(|s| &s.kinds[kind.index()]);
            let kind = kind.as_str();
            let mut cumulative = 0u64;
            for i in 0..=self.bounds_ns.len() {
                cumulative += shards
                    .clone()
                    .map(|k| k.counts[i].load(Ordering::Relaxed))
                    .sum::<u64>();
                let le = self.labels.get(i).map_or("+Inf", String::as_str);
                let _ = writeln!(
                    out,
                    "{name}_bucket{{kind=\"{kind}\",le=\"{le}\"}} {cumulative}"
                );
            }
            let sum = shards
                .map(|k| k.sum_ns.load(Ordering::Relaxed))
                .fold(0u64, u64::wrapping_add) as f64
                / 1e9;
            let _ = writeln!(out, "{name}_sum{{kind=\"{kind}\"}} {sum}");
            let _ = writeln!(out, "{name}_count{{kind=\"{kind}\"}} {cumulative}");
        }
        out.push('\n');
    }
}

/// How often the server's upkeep task drains the histogram buffers: at most this much traffic is buffered
/// (a few samples per protocol unit, 8 bytes each).
pub const UPKEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loop_counters_add_up_across_loops_and_render_one_family_each() {
        let m = std::sync::Arc::new(Metrics::new());
        let c = Counters::new(&m);
        c.extended_units.increment(2);
        m.completed[UnitKind::Dml.index()][1].increment(1);
        let other = (m.clone(), c.extended_units.clone(), c.statements.clone());
        std::thread::spawn(move || {
            set_shard(5);
            other.1.increment(3);
            other.0.completed[UnitKind::Dml.index()][1].increment(1);
            other.2[StatementClass::Dml.index()].increment(7);
        })
        .join()
        .expect("recording thread");
        assert_eq!(m.value("ddlgate_extended_units_total", &[]), 5.0);
        assert_eq!(
            m.value(
                "ddlgate_statements_completed_total",
                &[("kind", "dml"), ("outcome", "error")]
            ),
            2.0
        );
        assert_eq!(c.statements(StatementClass::Dml), 7);
        let text = m.render();
        for family in LOOP_COUNTER_FAMILIES {
            assert_eq!(
                text.matches(&format!("# TYPE {family} counter\n")).count(),
                1,
                "{text}"
            );
        }
        assert!(
            text.contains("ddlgate_statements_completed_total{kind=\"ddl\",outcome=\"ok\"} 0\n"),
            "{text}"
        );
    }

    #[test]
    fn units_recorded_on_different_loops_add_up_in_one_family() {
        let m = std::sync::Arc::new(Metrics::new());
        let us = Duration::from_micros;
        m.unit_done(UnitKind::Dml, false, us(300), us(200));
        let other = m.clone();
        std::thread::spawn(move || {
            set_shard(3);
            other.unit_done(UnitKind::Dml, false, us(300), us(200));
            set_shard(SHARDS + 3);
            other.unit_done(UnitKind::Dml, true, us(3), us(2));
        })
        .join()
        .expect("recording thread");
        let text = m.render();
        let count = |le: &str| {
            read(
                &text,
                "ddlgate_statement_duration_seconds_bucket",
                &[("kind", "dml"), ("le", le)],
            )
        };
        assert_eq!(count("0.0001"), 1.0, "{text}");
        assert_eq!(count("0.0005"), 3.0, "{text}");
        assert_eq!(count("+Inf"), 3.0, "{text}");
        let sum = read(
            &text,
            "ddlgate_statement_duration_seconds_sum",
            &[("kind", "dml")],
        );
        assert!((sum - 0.000603).abs() < 1e-12, "{sum}");
    }

    #[test]
    fn exposition_names_and_labels() {
        let m = Metrics::new();
        m.unit_done(
            UnitKind::Dml,
            false,
            Duration::from_micros(300),
            Duration::from_micros(200),
        );
        m.unit_done(
            UnitKind::Ddl,
            true,
            Duration::from_millis(1500),
            Duration::from_millis(1400),
        );
        m.session_state(None, Some(0));
        m.session_state(Some(0), Some(1));
        let _registered = (Counters::new(&m), ConnectionCounters::new(&m));
        let text = m.render();
        assert!(
            text.contains("ddlgate_statements_completed_total{kind=\"ddl\",outcome=\"error\"} 1"),
            "{text}"
        );
        assert!(
            text.contains(
                "ddlgate_statement_duration_seconds_bucket{kind=\"dml\",le=\"0.0005\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains("ddlgate_sessions{tx_state=\"in_transaction\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("ddlgate_lock_wait_seconds_bucket{le=\"0.01\"} 0"),
            "{text}"
        );
        // ddlgate's own share: 100 µs of the DML unit, in microsecond buckets.
        assert!(
            text.contains("ddlgate_proxy_overhead_seconds_bucket{kind=\"dml\",le=\"0.0001\"} 1")
                && text.contains(
                    "ddlgate_proxy_overhead_seconds_bucket{kind=\"dml\",le=\"0.00005\"} 0"
                ),
            "{text}"
        );
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            assert!(line.starts_with("ddlgate_"), "{line}");
        }
    }

    #[test]
    fn unit_histograms_count_bounds_inclusively_and_parse_as_prometheus_histograms() {
        let m = Metrics::new();
        let us = Duration::from_micros;
        // total, upstream: overhead 5 µs (on the first bound), 5.001 µs, 1 s (above the last).
        m.unit_done(UnitKind::Dml, false, us(105), us(100));
        m.unit_done(
            UnitKind::Dml,
            false,
            us(105) + Duration::from_nanos(1),
            us(100),
        );
        m.unit_done(
            UnitKind::Dml,
            true,
            Duration::from_secs(31),
            Duration::from_secs(30),
        );
        let text = m.render();
        let has = |line: &str| assert!(text.contains(line), "{line} in\n{text}");
        has("ddlgate_proxy_overhead_seconds_bucket{kind=\"dml\",le=\"0.000005\"} 1\n");
        has("ddlgate_proxy_overhead_seconds_bucket{kind=\"dml\",le=\"0.00001\"} 2\n");
        has("ddlgate_proxy_overhead_seconds_bucket{kind=\"dml\",le=\"0.05\"} 2\n");
        has("ddlgate_proxy_overhead_seconds_bucket{kind=\"dml\",le=\"+Inf\"} 3\n");
        has("ddlgate_proxy_overhead_seconds_count{kind=\"dml\"} 3\n");
        has("ddlgate_proxy_overhead_seconds_sum{kind=\"dml\"} 1.000010001\n");
        has("ddlgate_statement_duration_seconds_bucket{kind=\"dml\",le=\"30\"} 2\n");
        has("ddlgate_statement_upstream_seconds_bucket{kind=\"dml\",le=\"30\"} 3\n");
        has("ddlgate_statement_duration_seconds_count{kind=\"ddl\"} 0\n");
        let parsed = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
            .expect("valid exposition");
        let overhead = parsed
            .samples
            .iter()
            .find(|s| {
                s.metric == "ddlgate_proxy_overhead_seconds" && s.labels.get("kind") == Some("dml")
            })
            .expect("the overhead histogram");
        match &overhead.value {
            prometheus_parse::Value::Histogram(buckets) => {
                assert_eq!(buckets.len(), OVERHEAD_BUCKETS.len() + 1);
                assert_eq!(buckets.last().map(|b| b.count), Some(3.0));
            }
            other => panic!("not a histogram: {other:?}"),
        }
        // One HELP line per family, as for the exporter's own.
        assert_eq!(
            text.matches("# HELP ddlgate_proxy_overhead_seconds ")
                .count(),
            1
        );
    }

    #[test]
    fn every_metric_is_defined_once_and_exposed_with_its_help() {
        let m = Metrics::new();
        let (counters, connections) = (Counters::new(&m), ConnectionCounters::new(&m));
        let _audit = AuditCounters::new(&m);
        m.unit_done(
            UnitKind::Other,
            false,
            Duration::from_millis(1),
            Duration::from_micros(500),
        );
        let text = m.render();
        for (i, d) in DEFS.iter().enumerate() {
            assert!(
                DEFS[..i].iter().all(|e| e.name != d.name),
                "{} defined twice",
                d.name
            );
            assert!(
                text.contains(&format!("# HELP {} {}\n", d.name, d.help)),
                "{} has no HELP line:\n{text}",
                d.name
            );
        }
        // Every sample belongs to a defined metric.
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            let name = line.split(['{', ' ']).next().unwrap_or_default();
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .filter(|b| {
                    DEFS.iter()
                        .any(|d| d.name == *b && d.kind == Kind::Histogram)
                })
                .unwrap_or(name);
            assert!(DEFS.iter().any(|d| d.name == base), "{line}");
        }
        // Label sets are registered up front: every rule × action is exposed, at 0.
        assert!(
            text.contains(
                "ddlgate_ddl_decisions_total{rule=\"ban-drop-table\",action=\"rewrite\"} 0"
            ),
            "{text}"
        );
        // Recorded where it happens, read back from the exposition.
        counters.guard.retries.increment(2);
        connections.login_timeouts.increment(1);
        connections.active.increment(1.0);
        assert_eq!(m.value("ddlgate_lock_retries_total", &[]), 2.0);
        assert_eq!(connections.rejected("login_timeout"), 1);
        assert_eq!(m.value("ddlgate_connections_active", &[]), 1.0);
        assert_eq!(counters.statements(StatementClass::Dml), 0);
    }

    #[test]
    fn actions_are_listed_in_index_order() {
        for (i, a) in ACTIONS.into_iter().enumerate() {
            assert_eq!(a as usize, i);
        }
    }

    #[test]
    fn reads_a_sample_whatever_its_label_order() {
        let text = "# HELP x y\nx{a=\"1\",b=\"2\"} 3\nx{a=\"1\"} 4\nz 5\n";
        assert_eq!(read(text, "x", &[("b", "2"), ("a", "1")]), 3.0);
        assert_eq!(read(text, "x", &[("a", "1")]), 4.0);
        assert_eq!(read(text, "z", &[]), 5.0);
        assert_eq!(read(text, "x", &[]), 0.0);
    }
}

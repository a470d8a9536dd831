//! Prometheus metrics: what ddlgate does, for operators.
//!
//! Each proxy instance owns its own `metrics-exporter-prometheus` recorder (not the process-wide
//! global one), so several instances in one process — the integration tests — never mix their
//! numbers. Hot-path metrics (statement latency, transaction states, lock waits) are recorded
//! through handles registered once; the counters the rest of ddlgate already keeps as atomics
//! (statements by class, decisions per rule and action, guard retries, …) are copied into the
//! registry when `/metrics` is scraped, so there is one place for each number.
//!
//! Every name is prefixed `ddlgate_`; label values are bounded sets (statement kind, outcome,
//! rule id, action, transaction state, reason) — never SQL text, table or user names.
//!
//! Histogram buckets: statement latency and its upstream share from 100 µs (a proxy hop on
//! localhost costs tens of microseconds) to 30 s; lock waits, DDL execution, queue waits and
//! dangerous-lock hold times from 10 ms to 10 min.

use std::sync::atomic::{AtomicU64, Ordering};

use metrics::{Counter, Gauge, Histogram, Key, Label, Level, Metadata, Recorder};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

use crate::analysis::{Counters, understood_index};
use crate::rules::{Action, RULES};
use crate::sql::prefilter::StatementClass;
use crate::sql::statement::Understood;

/// Connection-level counters.
#[derive(Debug, Default)]
pub struct ConnectionCounters {
    pub accepted: AtomicU64,
    pub active: AtomicU64,
    /// Clients refused FATAL 53300 because `limits.max_clients` authenticated sessions were
    /// running.
    pub rejected_too_many: AtomicU64,
    /// Connections refused because `limits.max_unauthenticated` connections were logging in
    /// and none of them could be evicted (FATAL 53300, or closed at once past the bound on
    /// refusals in progress).
    pub rejected_unauthenticated: AtomicU64,
    /// Connections closed to make room for a newer one while they had not sent their startup
    /// packet yet.
    pub evicted_before_startup: AtomicU64,
    /// Connections closed for not sending their startup packet within
    /// `limits.startup_timeout_ms`.
    pub startup_timeouts: AtomicU64,
    /// Connections closed for not finishing authentication within `limits.login_timeout_ms`.
    pub login_timeouts: AtomicU64,
    pub upstream_connect_failures: AtomicU64,
    pub cancels_forwarded: AtomicU64,
    /// Statements cancelled upstream because their client vanished mid-statement.
    pub cancels_on_client_loss: AtomicU64,
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
    /// The kind of one analysed Query or Parse.
    pub fn of(summary: &crate::analysis::Summary) -> UnitKind {
        if summary.ddl_candidates > 0 {
            UnitKind::Ddl
        } else if summary.dml > 0 {
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

/// One instance's metrics.
pub struct Metrics {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    /// `ddlgate_statement_duration_seconds{kind}`: from the client's message to the
    /// ReadyForQuery ddlgate forwards, as the client sees it through ddlgate.
    pub statement_seconds: [Histogram; 3],
    /// `ddlgate_statement_upstream_seconds{kind}`: the upstream's share of it, from the moment
    /// the message is written to the upstream socket.
    pub upstream_seconds: [Histogram; 3],
    /// `ddlgate_proxy_overhead_seconds{kind}`: the rest — ddlgate's own time before forwarding
    /// (decoding, analysis, waiting for the server to be idle before deciding a DDL).
    pub overhead_seconds: [Histogram; 3],
    /// `ddlgate_statements_completed_total{kind,outcome}` per protocol unit, outcome ok/error.
    pub completed: [[Counter; 2]; 3],
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
    /// The same counts as the sessions gauge, readable (for `/status`).
    states: [std::sync::atomic::AtomicI64; 3],
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

fn key(name: &'static str, labels: &[(&'static str, &'static str)]) -> Key {
    Key::from_parts(
        name,
        labels
            .iter()
            .map(|(k, v)| Label::new(*k, *v))
            .collect::<Vec<_>>(),
    )
}

static META: Metadata<'static> = Metadata::new(module_path!(), Level::INFO, None);

impl Metrics {
    pub fn new() -> Metrics {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Prefix("ddlgate_statement_".to_owned()),
                LATENCY_BUCKETS,
            )
            .and_then(|b| {
                b.set_buckets_for_metric(
                    Matcher::Full("ddlgate_proxy_overhead_seconds".to_owned()),
                    OVERHEAD_BUCKETS,
                )
            })
            .and_then(|b| b.set_buckets(LOCK_BUCKETS));
        // The bucket lists are constants and non-empty: building cannot fail; fall back to the
        // exporter's defaults (summaries) rather than panic if it ever did.
        let recorder = match builder {
            Ok(b) => b.build_recorder(),
            Err(_) => PrometheusBuilder::new().build_recorder(),
        };
        let handle = recorder.handle();
        let r = &recorder;
        let hist = |name, labels: &[(&'static str, &'static str)]| {
            r.register_histogram(&key(name, labels), &META)
        };
        let statement_seconds = KINDS.map(|k| {
            hist(
                "ddlgate_statement_duration_seconds",
                &[("kind", k.as_str())],
            )
        });
        let upstream_seconds = KINDS.map(|k| {
            hist(
                "ddlgate_statement_upstream_seconds",
                &[("kind", k.as_str())],
            )
        });
        let gauge = |name| r.register_gauge(&key(name, &[]), &META);
        let overhead_seconds =
            KINDS.map(|k| hist("ddlgate_proxy_overhead_seconds", &[("kind", k.as_str())]));
        let completed = KINDS.map(|k| {
            ["ok", "error"].map(|o| {
                r.register_counter(
                    &key(
                        "ddlgate_statements_completed_total",
                        &[("kind", k.as_str()), ("outcome", o)],
                    ),
                    &META,
                )
            })
        });
        let sessions = TX_STATES
            .map(|s| r.register_gauge(&key("ddlgate_sessions", &[("tx_state", s)]), &META));
        Metrics {
            statement_seconds,
            upstream_seconds,
            overhead_seconds,
            completed,
            sessions,
            lock_wait_seconds: hist("ddlgate_lock_wait_seconds", &[]),
            ddl_execution_seconds: hist("ddlgate_ddl_execution_seconds", &[]),
            dangerous_lock_held_seconds: hist("ddlgate_dangerous_lock_held_seconds", &[]),
            queue_depth: r.register_gauge(&key("ddlgate_ddl_queue_depth", &[]), &META),
            queue_wait_seconds: hist("ddlgate_ddl_queue_wait_seconds", &[]),
            monitor_waiting: gauge("ddlgate_lock_monitor_waiting_sessions"),
            monitor_oldest_wait: gauge("ddlgate_lock_monitor_oldest_wait_seconds"),
            monitor_blocked_by_ddl: gauge("ddlgate_lock_monitor_blocked_by_ddl_sessions"),
            monitor_up: gauge("ddlgate_lock_monitor_up"),
            monitor_samples: ["ok", "error"].map(|o| {
                r.register_counter(
                    &key("ddlgate_lock_monitor_samples_total", &[("outcome", o)]),
                    &META,
                )
            }),
            states: Default::default(),
            recorder,
            handle,
        }
    }

    /// Folds the histogram samples recorded since the last call into their buckets. The
    /// exporter buffers every sample until then, so this must run periodically whether or not
    /// anyone scrapes `/metrics` (the server's upkeep task does), or memory grows with traffic.
    pub fn run_upkeep(&self) {
        self.handle.run_upkeep();
    }

    /// Records one completed protocol unit.
    pub fn unit_done(&self, kind: UnitKind, error: bool, total: f64, upstream: f64) {
        self.statement_seconds[kind.index()].record(total);
        self.upstream_seconds[kind.index()].record(upstream);
        self.overhead_seconds[kind.index()].record((total - upstream).max(0.0));
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

    fn absolute(&self, name: &'static str, labels: &[(&'static str, &'static str)], v: u64) {
        self.recorder
            .register_counter(&key(name, labels), &META)
            .absolute(v);
    }

    fn gauge(&self, name: &'static str, v: f64) {
        self.recorder.register_gauge(&key(name, &[]), &META).set(v);
    }

    /// `ddlgate_connections_unauthenticated` (holding one of `limits.max_unauthenticated`: not
    /// logged in yet) and `ddlgate_connections_authenticated` (holding one of
    /// `limits.max_clients`), as of now; set before each [`Metrics::render`].
    pub fn set_slots(&self, unauthenticated: usize, authenticated: usize) {
        self.gauge(
            "ddlgate_connections_unauthenticated",
            unauthenticated as f64,
        );
        self.gauge("ddlgate_connections_authenticated", authenticated as f64);
    }

    /// The Prometheus text exposition, with the atomic counters copied in first.
    pub fn render(&self, counters: &Counters, connections: &ConnectionCounters) -> String {
        let c = connections;
        self.absolute(
            "ddlgate_connections_accepted_total",
            &[],
            c.accepted.load(Ordering::Relaxed),
        );
        self.gauge(
            "ddlgate_connections_active",
            c.active.load(Ordering::Relaxed) as f64,
        );
        self.absolute(
            "ddlgate_connections_rejected_total",
            &[("reason", "too_many_clients")],
            c.rejected_too_many.load(Ordering::Relaxed),
        );
        self.absolute(
            "ddlgate_connections_rejected_total",
            &[("reason", "upstream_unreachable")],
            c.upstream_connect_failures.load(Ordering::Relaxed),
        );
        // Before authentication (`server::admission`): refused for want of an unauthenticated
        // slot, evicted before the startup packet, and the two login timeouts.
        for (reason, v) in [
            ("too_many_unauthenticated", &c.rejected_unauthenticated),
            ("evicted_before_startup", &c.evicted_before_startup),
            ("startup_timeout", &c.startup_timeouts),
            ("login_timeout", &c.login_timeouts),
        ] {
            self.absolute(
                "ddlgate_connections_rejected_total",
                &[("reason", reason)],
                v.load(Ordering::Relaxed),
            );
        }
        self.absolute(
            "ddlgate_cancels_forwarded_total",
            &[],
            c.cancels_forwarded.load(Ordering::Relaxed),
        );
        self.absolute(
            "ddlgate_cancels_on_client_loss_total",
            &[],
            c.cancels_on_client_loss.load(Ordering::Relaxed),
        );
        for class in StatementClass::ALL {
            self.absolute(
                "ddlgate_statements_total",
                &[("class", class.as_str())],
                counters.statements(class),
            );
        }
        for (u, label) in [
            (Understood::Parsed, "sqlparser"),
            (Understood::Fallback, "classifier"),
            (Understood::Unknown, "unparsed"),
        ] {
            self.absolute(
                "ddlgate_ddl_understood_total",
                &[("by", label)],
                counters.ddl_understood[understood_index(u)].load(Ordering::Relaxed),
            );
        }
        let d = &counters.decisions;
        for action in [Action::Allow, Action::Warn, Action::Rewrite, Action::Block] {
            self.absolute(
                "ddlgate_ddl_decisions_effective_total",
                &[("action", action.as_str())],
                d.effective[action as usize].load(Ordering::Relaxed),
            );
        }
        for rule in RULES {
            for action in [Action::Allow, Action::Warn, Action::Rewrite, Action::Block] {
                let v = d.rule_action(rule.id, action);
                if v > 0 {
                    self.absolute(
                        "ddlgate_ddl_decisions_total",
                        &[("rule", rule.id), ("action", action.as_str())],
                        v,
                    );
                }
            }
            let v = d.overrides(rule.id);
            if v > 0 {
                self.absolute("ddlgate_overrides_total", &[("rule", rule.id)], v);
            }
        }
        self.absolute(
            "ddlgate_invalid_overrides_total",
            &[],
            d.invalid_overrides.load(Ordering::Relaxed),
        );
        self.absolute(
            "ddlgate_rewrite_failures_total",
            &[],
            counters.rewrite_failures.load(Ordering::Relaxed),
        );
        let g = &counters.guard;
        for (name, v) in [
            ("ddlgate_guard_runs_total", &g.runs),
            ("ddlgate_lock_retries_total", &g.retries),
            ("ddlgate_lock_budget_exhausted_total", &g.exhausted),
            ("ddlgate_ddl_queue_waits_total", &g.queue_waits),
            ("ddlgate_ddl_queue_timeouts_total", &g.queue_timeouts),
        ] {
            self.absolute(name, &[], v.load(Ordering::Relaxed));
        }
        self.handle.render()
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
    fn exposition_names_and_labels() {
        let m = Metrics::new();
        m.unit_done(UnitKind::Dml, false, 0.0003, 0.0002);
        m.unit_done(UnitKind::Ddl, true, 1.5, 1.4);
        m.session_state(None, Some(0));
        m.session_state(Some(0), Some(1));
        let text = m.render(&Counters::default(), &ConnectionCounters::default());
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
}

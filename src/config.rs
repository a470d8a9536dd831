//! Configuration: the serde structs behind `config/ddlgate.toml`, their documented defaults,
//! layered loading (built-in defaults → TOML file → `DDLGATE__SECTION__KEY` environment →
//! CLI flags) and validation.
//!
//! Every field documents its meaning and default here and in `config/ddlgate.toml`; a test loads
//! the shipped file so the two cannot drift apart. Unknown keys are rejected
//! (`deny_unknown_fields`) so a typo never silently falls back to a default.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::error::ConfigError;

/// Statements of one message analysed at most (`limits.max_statements_per_message`), unless the
/// configuration sets another limit.
pub const DEFAULT_MAX_STATEMENTS_PER_MESSAGE: usize = 10_000;

/// The whole configuration. One immutable snapshot is shared by every session (`Arc<Config>`).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub upstream: UpstreamConfig,
    pub tls: TlsConfig,
    pub limits: LimitsConfig,
    pub log: LogConfig,
    pub guard: GuardConfig,
    pub catalog: CatalogConfig,
    pub admin: AdminConfig,
    pub audit: AuditConfig,
    pub journal: JournalConfig,
    pub monitor: MonitorConfig,
    pub policy: PolicyConfig,
    /// `[[profiles]]`: policies for particular users, databases or applications; the first
    /// profile whose `match` fits a session applies, otherwise `[policy]`.
    pub profiles: Vec<ProfileConfig>,
}

/// How visible ddlgate's decisions are.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Decisions are carried out: blocks block, rewrites rewrite. The default: ddlgate is a
    /// safety device.
    #[default]
    Enforce,
    /// Nothing is blocked or rewritten; every finding becomes a NOTICE to the client.
    Warn,
    /// Nothing is visible to clients; decisions are only logged and counted.
    Observe,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Warn => "warn",
            Mode::Observe => "observe",
        }
    }
}

/// `[policy]`: what ddlgate does with DDL findings in sessions no profile matches. Built-in
/// defaults need no file at all: enforce, every rule at its documented default action, and
/// overrides allowed for every rule.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    pub mode: Mode,
    /// Rule ids a statement comment `/* ddlgate:allow rule-id reason="…" */` may allow:
    /// `["*"]` (default) for every rule, `[]` for none.
    pub overridable: Vec<String>,
    /// Per-rule actions replacing the rules' defaults: `"rule-id" = "allow" | "warn" |
    /// "rewrite" | "block"`.
    pub rules: std::collections::BTreeMap<String, crate::rules::Action>,
    /// `[policy.backfill]`: the backfill guard (`large-backfill`), off by default.
    pub backfill: BackfillConfig,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            mode: Mode::Enforce,
            overridable: vec!["*".to_owned()],
            rules: Default::default(),
            backfill: BackfillConfig::default(),
        }
    }
}

/// The row estimate above which `max_rows` applies, unless configured.
pub const DEFAULT_BACKFILL_MAX_ROWS: u64 = 100_000;

/// `[policy.backfill]`: the backfill guard. An UPDATE or DELETE (also inside `WITH`) that the
/// planner estimates (EXPLAIN without ANALYZE, on the session's own connection, at a statement
/// boundary) to modify more than `max_rows` rows gets the rule `large-backfill`, with the
/// batched alternative in its hint. Reloads live (a session applies it from its next message).
#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BackfillConfig {
    /// Examine UPDATE/DELETE at all. Default `false`: with it off, such statements are
    /// classified by the keyword prefilter as before and nothing more is done for them.
    pub enabled: bool,
    /// A statement estimated to modify more rows than this is flagged. Default 100000.
    pub max_rows: u64,
    /// What the finding does: `"warn"` (a WARNING) or `"block"` (DG001). Default `"warn"`.
    /// `mode` (warn/observe) and a `rules."large-backfill"` entry apply on top, as for any rule.
    pub action: BackfillAction,
}

impl Default for BackfillConfig {
    fn default() -> Self {
        BackfillConfig {
            enabled: false,
            max_rows: DEFAULT_BACKFILL_MAX_ROWS,
            action: BackfillAction::Warn,
        }
    }
}

/// What the backfill guard does above its threshold.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(try_from = "String")]
pub enum BackfillAction {
    Warn,
    Block,
}

impl TryFrom<String> for BackfillAction {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        match s.as_str() {
            "warn" => Ok(BackfillAction::Warn),
            "block" => Ok(BackfillAction::Block),
            other => Err(format!(
                "backfill.action must be \"warn\" or \"block\", not \"{other}\""
            )),
        }
    }
}

impl BackfillAction {
    /// The rule action it stands for.
    pub fn action(self) -> crate::rules::Action {
        match self {
            BackfillAction::Warn => crate::rules::Action::Warn,
            BackfillAction::Block => crate::rules::Action::Block,
        }
    }
}

/// `[profiles.backfill]`: what a profile changes of `[policy.backfill]`; every field unset
/// is inherited.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BackfillOverrides {
    pub enabled: Option<bool>,
    pub max_rows: Option<u64>,
    pub action: Option<BackfillAction>,
}

impl BackfillOverrides {
    /// `base` with what this profile sets.
    pub fn over(&self, base: &BackfillConfig) -> BackfillConfig {
        BackfillConfig {
            enabled: self.enabled.unwrap_or(base.enabled),
            max_rows: self.max_rows.unwrap_or(base.max_rows),
            action: self.action.unwrap_or(base.action),
        }
    }
}

/// One `[[profiles]]` entry.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ProfileConfig {
    /// Shown in logs and notices.
    pub name: String,
    /// Which sessions the profile applies to; every given field must match. A value ending in
    /// `*` matches by prefix (`"migrat*"`).
    #[serde(rename = "match")]
    pub selector: Selector,
    /// Defaults to `[policy].mode`.
    pub mode: Option<Mode>,
    /// Defaults to `[policy].overridable`.
    pub overridable: Option<Vec<String>>,
    /// Applied on top of `[policy].rules`.
    #[serde(default)]
    pub rules: std::collections::BTreeMap<String, crate::rules::Action>,
    /// `[profiles.backfill]`: fields set here replace `[policy.backfill]`'s.
    #[serde(default)]
    pub backfill: BackfillOverrides,
}

/// The `match` of a profile: every given field must match.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Selector {
    pub user: Option<Patterns>,
    pub database: Option<Patterns>,
    pub application_name: Option<Patterns>,
}

/// One pattern or a list of them (any may match); a pattern ending in `*` matches by prefix.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(from = "OneOrMany")]
pub struct Patterns(pub Vec<String>);

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl From<OneOrMany> for Patterns {
    fn from(v: OneOrMany) -> Self {
        match v {
            OneOrMany::One(s) => Patterns(vec![s]),
            OneOrMany::Many(v) => Patterns(v),
        }
    }
}

impl From<&str> for Patterns {
    fn from(s: &str) -> Self {
        Patterns(vec![s.to_owned()])
    }
}

impl Patterns {
    /// Whether `value` matches any of the patterns.
    pub fn matches(&self, value: &str) -> bool {
        self.0.iter().any(|p| match p.strip_suffix('*') {
            Some(prefix) => value.starts_with(prefix),
            None => p == value,
        })
    }
}

/// `[server]`: the client-facing listener.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address ddlgate listens on. Default `127.0.0.1:6432`: localhost only, so exposing the
    /// proxy is a deliberate choice. Needs a restart to change.
    pub listen: SocketAddr,
    /// How long a SIGTERM drain waits for open transactions to finish before the remaining
    /// sessions are closed with FATAL 57P01. Default 30 s.
    #[serde(with = "duration_ms")]
    pub drain_timeout_ms: Duration,
    /// Session event loops: threads, each running its own poller, that sessions are spread
    /// over (a session stays on one). Default 0: one per available core. Needs a restart.
    pub event_loops: usize,
    /// Relay sessions in their steady state (logged in, plain TCP on both sides, no DDL being
    /// decided) on a poller thread beside each event loop, outside the async runtime: the
    /// cheaper path per round trip. Default true. Needs a restart.
    pub steady_relay: bool,
}

/// `[upstream]`: the PostgreSQL server every session is relayed to (1:1, no pooling).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamConfig {
    /// `host:port` of PostgreSQL. Default `127.0.0.1:5432`. A host name is resolved for every
    /// new session, so DNS changes are picked up without a restart.
    pub address: String,
    /// Time allowed to open the TCP connection to PostgreSQL. Default 10 s.
    #[serde(with = "duration_ms")]
    pub connect_timeout_ms: Duration,
    /// TLS to PostgreSQL, like libpq's `sslmode`. Default `disable`. Needs a restart.
    pub tls: UpstreamTlsMode,
    /// PEM file of the CA certificate(s) the server's certificate must chain to; required for
    /// (and only used by) `tls = "verify-full"`. Default empty.
    pub tls_ca_file: PathBuf,
}

/// `upstream.tls`: whether ddlgate speaks TLS to PostgreSQL. It sends an SSLRequest first, as
/// libpq does.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum UpstreamTlsMode {
    /// Plaintext; no SSLRequest is sent. The default.
    #[default]
    Disable,
    /// TLS when the server supports it, plaintext when it answers `N`; the certificate is not
    /// checked.
    Prefer,
    /// TLS or no session; the certificate is not checked (encryption without authentication).
    Require,
    /// TLS, the certificate must chain to `tls_ca_file` and name the host of `address`.
    VerifyFull,
}

/// `[tls]`: TLS between clients and ddlgate. ddlgate terminates it: the upstream connection is
/// configured separately (`upstream.tls`). Needs a restart; the files are read once at start.
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// `disable` (default: SSLRequest is answered `N`), `allow` (TLS for clients that ask) or
    /// `require` (clients that do not ask get FATAL 28000).
    pub mode: ClientTlsMode,
    /// PEM certificate chain ddlgate presents, server certificate first. Required unless
    /// `mode = "disable"`. Default empty.
    pub cert_file: PathBuf,
    /// PEM private key of that certificate (PKCS#8, PKCS#1 or SEC1). Required unless
    /// `mode = "disable"`. Default empty.
    pub key_file: PathBuf,
}

/// `tls.mode`.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum ClientTlsMode {
    /// No client-facing TLS. The default.
    #[default]
    Disable,
    /// TLS for clients that ask for it (SSLRequest or direct TLS); plaintext for the others.
    Allow,
    /// TLS only: a plaintext client gets FATAL 28000 after its startup packet.
    Require,
}

impl ClientTlsMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ClientTlsMode::Disable => "disable",
            ClientTlsMode::Allow => "allow",
            ClientTlsMode::Require => "require",
        }
    }
}

/// `[limits]`: bounds on what a client can make ddlgate do.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Maximum number of authenticated client sessions at once, exactly like PostgreSQL's
    /// `max_connections`. A slot is taken only when the upstream accepts the client's
    /// credentials (AuthenticationOk); a client that finds none free then gets FATAL 53300
    /// instead of its AuthenticationOk. Connections still logging in never count here, so they
    /// cannot lock authenticated clients out. Default 100. Needs a restart to change.
    pub max_clients: usize,
    /// Maximum number of connections accepted but not yet authenticated (negotiating TLS,
    /// sending their startup packet, or in the middle of authentication). Until its first
    /// ReadyForQuery such a connection is read only for password/SASL/GSS messages (at most
    /// 65,535 bytes, PostgreSQL's cap); anything else stays unread, with at most one read
    /// (about 128 KiB) buffered, and nothing is analysed. Each of them has an
    /// upstream connection once its startup packet has arrived, so PostgreSQL's
    /// `max_connections` should allow `max_clients + max_unauthenticated`. When all are taken,
    /// a new connection evicts (closes, with FATAL 53300) the oldest one that has not sent its
    /// startup packet yet; when every one of them has, the new connection gets FATAL 53300 after its startup
    /// packet (up to 64 such refusals at once, beyond that it is closed without a word).
    /// PgBouncer bounds the same state only in time (`client_login_timeout`); PostgreSQL by its
    /// process slots plus `authentication_timeout`. Default 64. Needs a restart to change.
    pub max_unauthenticated: usize,
    /// Time a new connection has to send its startup packet, SSL/GSS negotiation and TLS
    /// handshake included. A client sends it within one round trip of connecting, so this can
    /// be short: it is what frees a slot held by a connection that says nothing (slowloris).
    /// A value above `login_timeout_ms` has no effect: the startup packet is part of the login.
    /// The closest equivalents are PostgreSQL's
    /// `authentication_timeout` and PgBouncer's `client_login_timeout`, which bound this and
    /// the authentication together, as `login_timeout_ms` does here. Default 10 s. Reloadable
    /// (applies to connections accepted after the reload).
    #[serde(with = "duration_ms")]
    pub startup_timeout_ms: Duration,
    /// Time a client has to finish startup and authentication, up to its first ReadyForQuery
    /// (PostgreSQL's `authentication_timeout`, PgBouncer's `client_login_timeout`). Default
    /// 60 s. Reloadable (applies to connections accepted after the reload).
    #[serde(with = "duration_ms")]
    pub login_timeout_ms: Duration,
    /// Largest message a client may send after startup, in bytes. Default 1 GiB − 1, the
    /// PostgreSQL server's own limit. Messages ddlgate does not inspect (CopyData, Bind, …) are
    /// streamed through, so this costs no memory.
    pub max_message_bytes: usize,
    /// Largest Query or Parse message, in bytes. ddlgate must hold these whole to analyse the
    /// SQL, so this bounds per-session memory. Default 64 MiB.
    pub max_statement_bytes: usize,
    /// Most statements of one Query ddlgate analyses. A message with more is forwarded
    /// untouched when none of them can be DDL, and otherwise refused as a whole as unverifiable
    /// (SQLSTATE DG002, counted as not understood): analysis memory and time per message stay
    /// bounded whatever a client sends. Default 10000. Reloads live.
    pub max_statements_per_message: usize,
    /// Query/Parse messages at least this large are analysed off the session's event loop (the
    /// session moves to a blocking-pool thread for it), so that their analysis never delays
    /// the loop's other sessions.
    /// Default 64 KiB. Reloads live.
    pub offload_analysis_bytes: usize,
}

/// `[guard]`: how DDL runs — the lock guard, its retries, and per-table serialization.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct GuardConfig {
    /// Run DDL that takes a lock conflicting with ordinary traffic (SHARE or stronger) under a
    /// short `lock_timeout`, retried on SQLSTATE 55P03. Default true.
    pub enabled: bool,
    /// The `lock_timeout` for such DDL. A lower value the client set itself wins. Default 2 s.
    #[serde(with = "duration_ms")]
    pub lock_timeout_ms: Duration,
    /// Attempts per statement, the first included. Default 10.
    pub max_attempts: u32,
    /// Total time budget for all attempts and the waits between them. Default 60 s.
    #[serde(with = "duration_ms")]
    pub max_wait_ms: Duration,
    /// First wait between attempts; doubled per attempt up to `backoff_max_ms`, each wait
    /// jittered to between half and all of it. Default 200 ms.
    #[serde(with = "duration_ms")]
    pub backoff_initial_ms: Duration,
    /// Longest wait between attempts. Default 5 s.
    #[serde(with = "duration_ms")]
    pub backoff_max_ms: Duration,
    /// Replace `statement_timeout` for long statements that take only SHARE UPDATE EXCLUSIVE
    /// (CREATE INDEX CONCURRENTLY, VALIDATE CONSTRAINT, REINDEX CONCURRENTLY, DETACH PARTITION
    /// CONCURRENTLY) by `long_statement_timeout_ms` for their duration. Default true.
    pub lift_statement_timeout: bool,
    /// The `statement_timeout` for those statements; 0 (the default) means none.
    #[serde(with = "duration_ms")]
    pub long_statement_timeout_ms: Duration,
    /// Serialize DDL per table across sessions and ddlgate instances (PostgreSQL advisory
    /// locks). Default true.
    pub serialize: bool,
    /// How long a DDL statement may wait for its turn on a table. Default 60 s.
    #[serde(with = "duration_ms")]
    pub queue_timeout_ms: Duration,
    /// Before an ACCESS EXCLUSIVE lock, wait while a transaction older than this holds any lock
    /// on the target (0: off). Default 0.
    #[serde(with = "duration_ms")]
    pub precheck_transaction_age_ms: Duration,
    /// Longest such pre-check wait; the statement then proceeds under the guard. Default 30 s.
    #[serde(with = "duration_ms")]
    pub precheck_max_wait_ms: Duration,
    /// Responses to a guarded Query held back (so a retry does not repeat them) up to this
    /// many bytes; beyond it they are forwarded and the Query is no longer retried. Default 1 MiB.
    pub max_buffered_bytes: usize,
    /// Prepared DDL statements tracked per session, so that their later executions run under
    /// the guard too and are decided again when their context changed since the Parse. Past
    /// it, the Parse of another prepared DDL statement is refused (DG001, hint: close or
    /// DEALLOCATE prepared statements); a slot is freed when the server confirms a Close,
    /// `DEALLOCATE` or `DISCARD ALL`. Default 1000.
    pub max_tracked_statements: usize,
}

impl Default for GuardConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            lock_timeout_ms: Duration::from_secs(2),
            max_attempts: 10,
            max_wait_ms: Duration::from_secs(60),
            backoff_initial_ms: Duration::from_millis(200),
            backoff_max_ms: Duration::from_secs(5),
            lift_statement_timeout: true,
            long_statement_timeout_ms: Duration::ZERO,
            serialize: true,
            queue_timeout_ms: Duration::from_secs(60),
            precheck_transaction_age_ms: Duration::ZERO,
            precheck_max_wait_ms: Duration::from_secs(30),
            max_buffered_bytes: 1 << 20,
            max_tracked_statements: 1000,
        }
    }
}

/// `[audit]`: one JSON line per DDL decision.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// Default false.
    pub enabled: bool,
    /// A file (appended to) or `-` for standard output. Default `-`.
    pub path: String,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            path: "-".to_owned(),
        }
    }
}

/// `[journal]`: the undo journal, a table in each user database where ddlgate records every DDL
/// statement it let through with its inverse (`ddlgate undo` reads it). The inverse is always
/// in the audit log (when `[audit]` is on); the journal adds a copy in the database itself,
/// written on the client's own connection, which needs the client's role to be allowed to
/// create the schema (or to write into it). Reloadable (from the next statement).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct JournalConfig {
    /// Default false: ddlgate writes nothing into users' databases unless asked to.
    pub enabled: bool,
    /// The schema of the `journal` table, created with `CREATE SCHEMA/TABLE IF NOT EXISTS` on
    /// first use. Default `ddlgate`.
    pub schema: String,
    /// DDL statements of one message whose `Before` snapshot is read at most. Default 100.
    pub max_statements: usize,
}

impl Default for JournalConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            schema: "ddlgate".to_owned(),
            max_statements: 100,
        }
    }
}

/// `[monitor]`: the lock monitor, which samples `pg_locks` and `pg_stat_activity` through a
/// connection of its own (to `upstream.address`, with `upstream.tls`). Reloadable.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MonitorConfig {
    /// Default false.
    pub enabled: bool,
    /// Time between samples. Default 5000 ms.
    #[serde(with = "duration_ms")]
    pub interval_ms: Duration,
    /// The monitor's login; required when enabled. Grant it `pg_monitor` so it sees every
    /// session's details.
    pub user: String,
    /// Its password (better from `DDLGATE__MONITOR__PASSWORD` than from the file). Never logged.
    pub password: Secret,
    /// Default `postgres`.
    pub database: String,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            interval_ms: Duration::from_secs(5),
            user: String::new(),
            password: Secret::default(),
            database: "postgres".to_owned(),
        }
    }
}

/// A credential: deserialized like a string, shown as `<redacted>` by `Debug`, so no log line
/// or error message that prints a configuration can leak it.
#[derive(Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_empty() {
            "\"\""
        } else {
            "<redacted>"
        })
    }
}

/// `[admin]`: the operators' HTTP endpoint.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Serve `/metrics`, `/healthz`, `/readyz`, `/status`. Default true.
    pub enabled: bool,
    /// Default `127.0.0.1:9187`: localhost only, so exposing it is a deliberate choice.
    pub listen: SocketAddr,
    /// When non-empty, every request needs `Authorization: Bearer <token>`. Default empty.
    pub token: Secret,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 9187)),
            token: Secret::default(),
        }
    }
}

/// `[catalog]`: reading the live catalog for verdicts.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CatalogConfig {
    /// Before deciding a DDL statement, read what the catalog says about its objects (table
    /// size and partitioning, column types, function volatility, constraints, indexes) with one
    /// read-only query on the session's own connection. Default true. The same pause also
    /// reads which relations the transaction created (`crate::created`): with `false`, no
    /// table counts as created in the transaction, so the locking rules and the lock guard
    /// apply to new tables too.
    pub enabled: bool,
    /// Tables with fewer rows than this *and* smaller than `small_table_bytes` are small: the
    /// rules whose only danger is a lock held through a scan or rewrite (index builds, drops
    /// and REINDEX, FK/CHECK validation, SET NOT NULL, UNIQUE/PRIMARY KEY builds, rewriting
    /// type changes and defaults, VACUUM FULL/CLUSTER, ATTACH PARTITION) allow the statement
    /// as written on them, inside or outside a transaction. Rows are the planner's estimate
    /// (`reltuples`), or, for a table never analyzed, the most its heap's pages can hold.
    /// 0 turns the allowance off. Default 10 000.
    pub small_table_rows: u64,
    /// Total size (heap, TOAST, indexes; the whole partition tree) under which a table can be
    /// small; a size not measured (another session held or awaited ACCESS EXCLUSIVE) is never
    /// small. Default 10 MiB.
    pub small_table_bytes: u64,
    /// Most relation names one message's "created in this transaction?" read resolves; names
    /// beyond are treated as existing tables (rules and lock guard apply). Default 256.
    /// Reloads live.
    pub max_resolved_names: usize,
    /// Most relations one transaction may have confirmed as created by it (exempt from the
    /// locking rules and the lock guard); later ones are treated as existing. Default 1024.
    /// Reloads live.
    pub max_created_relations: usize,
}

impl Default for CatalogConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            small_table_rows: 10_000,
            small_table_bytes: 10 << 20,
            max_resolved_names: 256,
            max_created_relations: 1024,
        }
    }
}

/// `[log]`: tracing output.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// Filter in `tracing_subscriber::EnvFilter` syntax. Default `info`. `RUST_LOG` wins if set.
    pub level: String,
    /// `text` (default) or `json` (one JSON object per line).
    pub format: LogFormat,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 6432)),
            drain_timeout_ms: Duration::from_secs(30),
            event_loops: 0,
            steady_relay: true,
        }
    }
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        Self {
            address: "127.0.0.1:5432".to_owned(),
            connect_timeout_ms: Duration::from_secs(10),
            tls: UpstreamTlsMode::Disable,
            tls_ca_file: PathBuf::new(),
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_clients: 100,
            max_unauthenticated: 64,
            startup_timeout_ms: Duration::from_secs(10),
            login_timeout_ms: Duration::from_secs(60),
            max_message_bytes: (1 << 30) - 1,
            max_statement_bytes: 64 << 20,
            max_statements_per_message: DEFAULT_MAX_STATEMENTS_PER_MESSAGE,
            offload_analysis_bytes: 64 << 10,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".to_owned(),
            format: LogFormat::Text,
        }
    }
}

/// Values given on the command line; they override file and environment.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub listen: Option<SocketAddr>,
    pub upstream: Option<String>,
}

impl Config {
    /// Loads the layered configuration: defaults, then `file` (if given; it must exist), then the
    /// `DDLGATE__SECTION__KEY` environment, then `overrides`; and validates the result.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Config, ConfigError> {
        Self::load_with_env(file, overrides, std::env::vars())
    }

    /// `load` with an explicit environment, so tests do not have to mutate the process env.
    pub fn load_with_env(
        file: Option<&Path>,
        overrides: &Overrides,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut builder = config::Config::builder();
        if let Some(path) = file {
            if !path.exists() {
                return Err(ConfigError::Missing(path.to_path_buf()));
            }
            // The `config` crate's own message for an unreadable file does not name it.
            if let Err(e) = std::fs::File::open(path) {
                return Err(ConfigError::Load(format!("{}: {e}", path.display())));
            }
            builder = builder.add_source(
                config::File::from(path)
                    .format(config::FileFormat::Toml)
                    .required(true),
            );
        }
        // `config`'s Environment source reads the process environment; collect the matching
        // variables ourselves so the source is explicit (and testable). The separator is `__`
        // because keys are snake_case: with `_`, `LIMITS_MAX_CLIENTS` would be `limits.max.clients`.
        let env_map: config::Map<String, String> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with("DDLGATE__"))
            .collect();
        builder = builder.add_source(
            config::Environment::with_prefix("DDLGATE")
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true)
                .source(Some(env_map)),
        );
        let layered = builder.build().map_err(ConfigError::from_config)?;
        let mut cfg: Config = layered
            .try_deserialize()
            .map_err(ConfigError::from_config)?;
        if let Some(listen) = overrides.listen {
            cfg.server.listen = listen;
        }
        if let Some(upstream) = &overrides.upstream {
            cfg.upstream.address = upstream.clone();
        }
        cfg.validate()?;
        Ok(cfg)
    }

    /// Rejects values that deserialize but make no sense, naming the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, why: &str| {
            Err(ConfigError::Invalid {
                key: key.to_owned(),
                reason: why.to_owned(),
            })
        };
        if self.upstream.address.trim().is_empty() || !self.upstream.address.contains(':') {
            return bad("upstream.address", "must be host:port");
        }
        if self.journal.schema.is_empty() || self.journal.schema.contains(['\0', '$']) {
            return bad("journal.schema", "must be a schema name without $");
        }
        let g = &self.guard;
        if g.lock_timeout_ms.is_zero() {
            return bad(
                "guard.lock_timeout_ms",
                "must be at least 1 (0 would mean no timeout)",
            );
        }
        if g.max_attempts == 0 {
            return bad("guard.max_attempts", "must be at least 1");
        }
        if g.backoff_initial_ms > g.backoff_max_ms {
            return bad(
                "guard.backoff_initial_ms",
                "must not exceed guard.backoff_max_ms",
            );
        }
        if g.max_buffered_bytes < 4096 {
            return bad("guard.max_buffered_bytes", "must be at least 4096");
        }
        if self.limits.max_clients == 0 {
            return bad("limits.max_clients", "must be at least 1");
        }
        if self.limits.login_timeout_ms.is_zero() {
            return bad("limits.login_timeout_ms", "must be greater than 0");
        }
        if self.limits.max_unauthenticated == 0 {
            return bad("limits.max_unauthenticated", "must be at least 1");
        }
        if self.limits.startup_timeout_ms.is_zero() {
            return bad("limits.startup_timeout_ms", "must be greater than 0");
        }
        if self.upstream.connect_timeout_ms.is_zero() {
            return bad("upstream.connect_timeout_ms", "must be greater than 0");
        }
        if self.tls.mode != ClientTlsMode::Disable {
            let needs = format!(
                "is required when tls.mode is \"{}\"",
                self.tls.mode.as_str()
            );
            if self.tls.cert_file.as_os_str().is_empty() {
                return bad("tls.cert_file", &needs);
            }
            if self.tls.key_file.as_os_str().is_empty() {
                return bad("tls.key_file", &needs);
            }
        }
        match (
            self.upstream.tls,
            self.upstream.tls_ca_file.as_os_str().is_empty(),
        ) {
            (UpstreamTlsMode::VerifyFull, true) => {
                return bad(
                    "upstream.tls_ca_file",
                    "is required when upstream.tls is \"verify-full\"",
                );
            }
            (UpstreamTlsMode::VerifyFull, false) | (_, true) => {}
            (_, false) => {
                // A CA file with require/prefer would suggest the server is verified; it is not.
                return bad(
                    "upstream.tls_ca_file",
                    "is only used with upstream.tls = \"verify-full\" (prefer and require do not check the certificate)",
                );
            }
        }
        if self.monitor.enabled && self.monitor.user.trim().is_empty() {
            return bad("monitor.user", "is required when monitor.enabled = true");
        }
        if self.monitor.interval_ms < Duration::from_millis(100) {
            return bad("monitor.interval_ms", "must be at least 100");
        }
        if self.limits.max_statements_per_message == 0 {
            return bad("limits.max_statements_per_message", "must be at least 1");
        }
        if self.limits.max_statement_bytes < 1024 {
            return bad("limits.max_statement_bytes", "must be at least 1024");
        }
        if self.limits.max_message_bytes < self.limits.max_statement_bytes {
            return bad(
                "limits.max_message_bytes",
                "must be at least limits.max_statement_bytes",
            );
        }
        if self.limits.max_message_bytes > (1 << 30) - 1 {
            return bad(
                "limits.max_message_bytes",
                "must be at most 1073741823 (PostgreSQL's own limit)",
            );
        }
        let known_rule = |id: &str| crate::rules::rule(id).is_some();
        for id in self.policy.rules.keys() {
            if !known_rule(id) {
                return bad(
                    &format!("policy.rules.{id}"),
                    "is not a ddlgate rule id (see `ddlgate rules`)",
                );
            }
        }
        for id in &self.policy.overridable {
            if id != "*" && !known_rule(id) {
                return bad("policy.overridable", &format!("names unknown rule `{id}`"));
            }
        }
        if self.policy.backfill.max_rows == 0 {
            return bad(
                "policy.backfill.max_rows",
                "must be at least 1 (to examine no statement, set enabled = false)",
            );
        }
        let mut names = std::collections::HashSet::new();
        for (i, p) in self.profiles.iter().enumerate() {
            if p.backfill.max_rows == Some(0) {
                return bad(
                    &format!("profiles[{i}].backfill.max_rows"),
                    "must be at least 1 (to examine no statement, set enabled = false)",
                );
            }
            if p.name.trim().is_empty() || !names.insert(p.name.as_str()) {
                return bad(
                    &format!("profiles[{i}].name"),
                    "must be non-empty and unique",
                );
            }
            let s = &p.selector;
            let fields = [&s.user, &s.database, &s.application_name];
            if fields
                .iter()
                .any(|f| f.as_ref().is_some_and(|p| p.0.is_empty()))
            {
                return bad(
                    &format!("profiles[{i}].match"),
                    "a pattern list must not be empty",
                );
            }
            if fields.iter().all(|f| f.is_none()) {
                return bad(
                    &format!("profiles[{i}].match"),
                    "must name at least one of user, database, application_name",
                );
            }
            for id in p.rules.keys() {
                if !known_rule(id) {
                    return bad(
                        &format!("profiles[{i}].rules.{id}"),
                        "is not a ddlgate rule id",
                    );
                }
            }
            for id in p.overridable.iter().flatten() {
                if id != "*" && !known_rule(id) {
                    return bad(
                        &format!("profiles[{i}].overridable"),
                        &format!("names unknown rule `{id}`"),
                    );
                }
            }
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log.level).is_err() {
            return bad(
                "log.level",
                "is not a valid tracing filter (e.g. `info`, `ddlgate=debug`)",
            );
        }
        Ok(())
    }

    /// The path of the shipped default configuration, relative to the repository root.
    pub fn shipped_default_path() -> PathBuf {
        PathBuf::from("config/ddlgate.toml")
    }
}

/// Durations are written as integer milliseconds in TOML and the environment (`*_ms` keys), the
/// unit PostgreSQL uses for its own timeouts.
mod duration_ms {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let ms = u64::deserialize(d)?;
        Ok(Duration::from_millis(ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn shipped() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join(Config::shipped_default_path())
    }

    #[test]
    fn backfill_settings_are_validated() {
        let load = |text: &str| {
            let dir = tempfile::tempdir().expect("tempdir");
            let path = dir.path().join("c.toml");
            std::fs::write(&path, text).expect("write");
            Config::load_with_env(Some(&path), &Overrides::default(), env(&[]))
        };
        let err = |text: &str| load(text).expect_err(text).to_string();
        let e = err("[policy.backfill]\nmax_rows = 0\n");
        assert!(e.contains("policy.backfill.max_rows"), "{e}");
        let e = err("[policy.backfill]\naction = \"rewrite\"\n");
        assert!(e.contains("warn") && e.contains("block"), "{e}");
        let e = err("[policy.backfill]\nthreshold = 5\n");
        assert!(e.contains("threshold"), "{e}");
        let e = err(
            "[[profiles]]\nname = \"p\"\nmatch = { user = \"u\" }\nbackfill = { max_rows = 0 }\n",
        );
        assert!(e.contains("profiles[0].backfill.max_rows"), "{e}");
        let ok = load("[policy.backfill]\nenabled = true\nmax_rows = 10\naction = \"block\"\n")
            .expect("valid");
        assert_eq!(
            ok.policy.backfill,
            BackfillConfig {
                enabled: true,
                max_rows: 10,
                action: BackfillAction::Block
            }
        );
    }

    #[test]
    fn shipped_file_loads_and_equals_the_built_in_defaults() {
        let cfg = Config::load_with_env(Some(&shipped()), &Overrides::default(), env(&[]))
            .expect("shipped config loads");
        assert_eq!(
            cfg,
            Config::default(),
            "config/ddlgate.toml must document exactly the built-in defaults"
        );
    }

    #[test]
    fn no_file_needed() {
        let cfg =
            Config::load_with_env(None, &Overrides::default(), env(&[])).expect("defaults load");
        assert_eq!(cfg.server.listen.to_string(), "127.0.0.1:6432");
    }

    #[test]
    fn env_overrides_file_and_cli_overrides_env() {
        let cfg = Config::load_with_env(
            Some(&shipped()),
            &Overrides {
                listen: Some("127.0.0.1:7000".parse().expect("addr")),
                upstream: None,
            },
            env(&[
                ("DDLGATE__LIMITS__MAX_CLIENTS", "7"),
                ("DDLGATE__UPSTREAM__ADDRESS", "db.internal:5433"),
                ("DDLGATE__SERVER__LISTEN", "127.0.0.1:6999"),
                ("UNRELATED", "x"),
            ]),
        )
        .expect("loads");
        assert_eq!(cfg.limits.max_clients, 7);
        assert_eq!(cfg.upstream.address, "db.internal:5433");
        assert_eq!(cfg.server.listen.to_string(), "127.0.0.1:7000");
    }

    #[test]
    fn profile_patterns_are_one_or_a_list() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.toml");
        let load = |toml: &str| {
            std::fs::write(&path, toml).expect("write");
            Config::load_with_env(Some(&path), &Overrides::default(), env(&[]))
        };
        let cfg = load("[[profiles]]\nname = \"h\"\nmatch = { user = \"bob\", application_name = [\"psql\", \"pgAdmin*\"] }\n")
            .expect("loads");
        let sel = &cfg.profiles[0].selector;
        assert!(
            sel.application_name
                .as_ref()
                .is_some_and(|p| p.matches("pgAdmin 4")
                    && p.matches("psql")
                    && !p.matches("psql2"))
        );
        assert!(sel.user.as_ref().is_some_and(|p| p.matches("bob")));
        let err = load("[[profiles]]\nname = \"h\"\nmatch = { application_name = [] }\n")
            .expect_err("empty list");
        assert!(err.to_string().contains("profiles[0].match"), "{err}");
        let err = load("[[profiles]]\nname = \"h\"\nmatch = {}\n").expect_err("matches everyone");
        assert!(err.to_string().contains("profiles[0].match"), "{err}");
        let err = load("[[profiles]]\nname = \"h\"\nmatch = { user = \"x\" }\n[profiles.rules]\n\"no-such-rule\" = \"block\"\n")
            .expect_err("unknown rule");
        assert!(err.to_string().contains("no-such-rule"), "{err}");
    }

    #[test]
    fn unknown_key_is_rejected_naming_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "[limits]\nmax_clinets = 5\n").expect("write");
        let err = Config::load_with_env(Some(&path), &Overrides::default(), env(&[]))
            .expect_err("must fail");
        assert!(err.to_string().contains("max_clinets"), "{err}");

        let err = Config::load_with_env(
            None,
            &Overrides::default(),
            env(&[("DDLGATE__SERVER__LISTN", "x")]),
        )
        .expect_err("must fail");
        assert!(err.to_string().contains("listn"), "{err}");
    }

    #[test]
    fn tls_keys_parse_and_required_files_are_named() {
        let cfg = Config::load_with_env(
            None,
            &Overrides::default(),
            env(&[
                ("DDLGATE__TLS__MODE", "require"),
                ("DDLGATE__TLS__CERT_FILE", "/etc/ddlgate/server.crt"),
                ("DDLGATE__TLS__KEY_FILE", "/etc/ddlgate/server.key"),
                ("DDLGATE__UPSTREAM__TLS", "verify-full"),
                ("DDLGATE__UPSTREAM__TLS_CA_FILE", "/etc/ddlgate/ca.crt"),
            ]),
        )
        .expect("loads");
        assert_eq!(cfg.tls.mode, ClientTlsMode::Require);
        assert_eq!(cfg.upstream.tls, UpstreamTlsMode::VerifyFull);
        assert_eq!(cfg.tls.key_file, PathBuf::from("/etc/ddlgate/server.key"));

        let fails = |pairs: &[(&str, &str)], key: &str| {
            let err = Config::load_with_env(None, &Overrides::default(), env(pairs))
                .expect_err("must fail");
            assert!(err.to_string().contains(key), "{err}");
        };
        fails(&[("DDLGATE__TLS__MODE", "allow")], "tls.cert_file");
        fails(
            &[
                ("DDLGATE__TLS__MODE", "require"),
                ("DDLGATE__TLS__CERT_FILE", "/x.crt"),
            ],
            "tls.key_file",
        );
        fails(&[("DDLGATE__TLS__MODE", "prefer")], "mode");
        fails(
            &[("DDLGATE__UPSTREAM__TLS", "verify-full")],
            "upstream.tls_ca_file",
        );
        fails(
            &[
                ("DDLGATE__UPSTREAM__TLS", "require"),
                ("DDLGATE__UPSTREAM__TLS_CA_FILE", "/ca.crt"),
            ],
            "upstream.tls_ca_file",
        );
    }

    #[test]
    fn bad_values_are_rejected_naming_the_key() {
        let err = Config::load_with_env(
            None,
            &Overrides::default(),
            env(&[("DDLGATE__LIMITS__MAX_CLIENTS", "0")]),
        )
        .expect_err("must fail");
        assert!(err.to_string().contains("limits.max_clients"), "{err}");
        let err = Config::load_with_env(
            None,
            &Overrides::default(),
            env(&[("DDLGATE__SERVER__LISTEN", "nope")]),
        )
        .expect_err("must fail");
        assert!(err.to_string().contains("listen"), "{err}");
        let err = Config::load_with_env(
            None,
            &Overrides::default(),
            env(&[("DDLGATE__LIMITS__MAX_CLIENTS", "lots")]),
        )
        .expect_err("must fail");
        assert!(err.to_string().contains("max_clients"), "{err}");
    }

    #[test]
    fn monitor_needs_a_user_and_secrets_are_never_shown() {
        let err = Config::load_with_env(
            None,
            &Overrides::default(),
            env(&[("DDLGATE__MONITOR__ENABLED", "true")]),
        )
        .expect_err("must fail");
        assert!(err.to_string().contains("monitor.user"), "{err}");
        let cfg = Config::load_with_env(
            None,
            &Overrides::default(),
            env(&[
                ("DDLGATE__MONITOR__ENABLED", "true"),
                ("DDLGATE__MONITOR__USER", "watcher"),
                ("DDLGATE__MONITOR__PASSWORD", "hunter2"),
                ("DDLGATE__ADMIN__TOKEN", "t0ken-value"),
            ]),
        )
        .expect("loads");
        assert_eq!(cfg.monitor.password.0, "hunter2");
        let shown = format!("{cfg:?}");
        assert!(
            !shown.contains("hunter2")
                && !shown.contains("t0ken-value")
                && shown.contains("<redacted>"),
            "{shown}"
        );
    }

    #[test]
    fn unauthenticated_limits_must_be_positive() {
        for key in [
            "DDLGATE__LIMITS__MAX_UNAUTHENTICATED",
            "DDLGATE__LIMITS__STARTUP_TIMEOUT_MS",
        ] {
            let err = Config::load_with_env(None, &Overrides::default(), env(&[(key, "0")]))
                .expect_err("must fail");
            let name = format!("limits.{}", key["DDLGATE__LIMITS__".len()..].to_lowercase());
            assert!(err.to_string().contains(&name), "{err}");
        }
        // A startup timeout longer than the whole login is allowed; the login bounds it.
        Config::load_with_env(
            None,
            &Overrides::default(),
            env(&[
                ("DDLGATE__LIMITS__STARTUP_TIMEOUT_MS", "90000"),
                ("DDLGATE__LIMITS__LOGIN_TIMEOUT_MS", "1000"),
            ]),
        )
        .expect("loads");
    }

    #[test]
    fn missing_file_is_an_error() {
        let err = Config::load_with_env(
            Some(Path::new("/nonexistent/ddlgate.toml")),
            &Overrides::default(),
            env(&[]),
        )
        .expect_err("must fail");
        assert!(
            err.to_string().contains("/nonexistent/ddlgate.toml"),
            "{err}"
        );
    }
}

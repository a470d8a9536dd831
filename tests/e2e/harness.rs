//! What every end-to-end test needs: the tools (installed, pinned, by `scripts/e2e-tools.sh`),
//! a cluster with ddlgate in front of it in its default configuration, databases to migrate
//! through the proxy and straight on the server, a schema dump to compare them, a command
//! runner that shows everything a tool printed when it fails, and a concurrent writer that
//! measures how long the application waits while migrations run.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::common::{self, Env, pg};

/// How long one tool command may run before it is killed.
pub const TOOL_TIMEOUT: Duration = Duration::from_secs(300);

/// Rows put in a "big" table: above `catalog.small_table_rows` (10,000), so the small-table
/// allowance does not apply and ddlgate treats it as a production table.
pub const BIG_ROWS: u32 = 30_000;

/// The directory holding a tool component's programs (`python`, `node`, `sqlx`, `diesel`),
/// installed on first use. Parallel tests wait for one install.
pub fn tool_dir(component: &str) -> PathBuf {
    static DIRS: OnceLock<Mutex<HashMap<String, PathBuf>>> = OnceLock::new();
    let mut dirs = DIRS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some(dir) = dirs.get(component) {
        return dir.clone();
    }
    let script = repo_root().join("scripts/e2e-tools.sh");
    let out = pg::run(
        Command::new("bash").arg(&script).arg(component),
        None,
        Duration::from_secs(1200),
    )
    .unwrap_or_else(|e| panic!("run {}: {e}", script.display()));
    assert!(
        out.status.success(),
        "installing the e2e tool component {component} failed:\n{}",
        pg::output_text(&out)
    );
    let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    assert!(dir.is_dir(), "{} is not a directory", dir.display());
    dirs.insert(component.to_owned(), dir.clone());
    dir
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The migration histories the tests run, under `tests/e2e/fixtures/<tool>`.
pub fn fixtures(tool: &str) -> PathBuf {
    repo_root().join("tests/e2e/fixtures").join(tool)
}

/// Copies a fixture tree into a fresh temporary directory the test may edit (a tool writes
/// files there, and a test applies "the tool's way out" by editing a migration).
pub fn workdir(tool: &str) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix(&format!("ddlgate-e2e-{tool}-"))
        .tempdir()
        .expect("tempdir");
    copy_tree(&fixtures(tool), dir.path());
    dir
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).unwrap_or_else(|e| panic!("{}: {e}", from.display())) {
        let entry = entry.expect("dir entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy fixture");
        }
    }
}

/// Which way a tool connects: through ddlgate, or straight to PostgreSQL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    Proxy,
    Direct,
}

/// A cluster, ddlgate in its default configuration in front of it, and helpers to make and
/// compare databases. The tools connect as `trust_user` (no password), which owns the
/// databases it migrates.
pub struct E2e {
    pub env: Env,
}

impl E2e {
    pub async fn start() -> E2e {
        E2e {
            env: Env::start().await,
        }
    }

    fn port(&self, via: Via) -> u16 {
        match via {
            Via::Proxy => self.env.proxy_addr().port(),
            Via::Direct => self.env.pg.port(),
        }
    }

    /// Creates database `name` owned by `trust_user`.
    pub async fn create_db(&self, name: &str) {
        let admin = self.env.direct_client(pg::ADMIN_USER).await;
        admin
            .batch_execute(&format!("CREATE DATABASE {name} OWNER trust_user"))
            .await
            .unwrap_or_else(|e| panic!("create database {name}: {e}"));
    }

    /// `postgres://trust_user@127.0.0.1:PORT/DB?sslmode=disable`.
    pub fn url(&self, via: Via, db: &str) -> String {
        format!(
            "postgres://trust_user@127.0.0.1:{}/{db}?sslmode=disable",
            self.port(via)
        )
    }

    /// Host, port, user and database as separate values, for tools configured that way.
    pub fn host_port(&self, via: Via) -> (&'static str, u16) {
        ("127.0.0.1", self.port(via))
    }

    /// A libpq key=value connection string.
    pub fn conninfo(&self, via: Via, db: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user=trust_user dbname={db} connect_timeout=10",
            self.port(via)
        )
    }

    pub async fn client(&self, via: Via, db: &str) -> tokio_postgres::Client {
        common::connect(&self.conninfo(via, db)).await
    }

    /// Runs `sql` straight on the server in `db` as the superuser (test set-up: filling
    /// tables, reading catalogs).
    pub async fn admin_exec(&self, db: &str, sql: &str) {
        let c = common::connect(&format!(
            "host=127.0.0.1 port={} user={} dbname={db} connect_timeout=10",
            self.env.pg.port(),
            pg::ADMIN_USER
        ))
        .await;
        c.batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("admin_exec in {db}: {e}\n{sql}"));
    }

    /// One value straight from the server (as text), for assertions.
    pub async fn query_text(&self, db: &str, sql: &str) -> Vec<String> {
        let c = self.client(Via::Direct, db).await;
        c.simple_query(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .into_iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => {
                    Some(r.get(0).unwrap_or("NULL").to_owned())
                }
                _ => None,
            })
            .collect()
    }

    /// Fills `table` (which must have a nullable-or-defaulted shape the caller knows) with
    /// `BIG_ROWS` rows by `insert_sql`, a statement with no parameters that inserts them, then
    /// ANALYZEs it, so the table is above the small-table thresholds by both measures.
    pub async fn fill(&self, db: &str, insert_sql: &str, table: &str) {
        self.admin_exec(db, insert_sql).await;
        self.admin_exec(db, &format!("ANALYZE {table}")).await;
        let rows = self
            .query_text(db, &format!("SELECT count(*) FROM {table}"))
            .await;
        let n: u64 = rows[0].parse().expect("count");
        assert!(
            n >= u64::from(BIG_ROWS),
            "{table} holds {n} rows, fewer than {BIG_ROWS}"
        );
    }

    /// Fills the `accounts` and `orders` tables every tool's history creates first with
    /// [`BIG_ROWS`] rows each (valid account ids, non-null totals), above the small-table
    /// thresholds.
    pub async fn fill_accounts_and_orders(&self, db: &str) {
        self.fill(
            db,
            &format!(
                "INSERT INTO accounts (email) SELECT 'user' || g || '@example.com' FROM generate_series(1, {BIG_ROWS}) g"
            ),
            "accounts",
        )
        .await;
        self.fill(
            db,
            &format!(
                "INSERT INTO orders (account_id, total, note, legacy_code) SELECT g, g, 'n', 'x' FROM generate_series(1, {BIG_ROWS}) g"
            ),
            "orders",
        )
        .await;
    }

    /// The schema of `db` as `pg_dump --schema-only` prints it, without comments, SET lines,
    /// psql meta-commands (`\restrict` keys differ per dump) or blank lines, so two databases
    /// migrated the same way compare equal. `exclude` names tables left out entirely (a tool's
    /// version table holds timestamps in its data, never in its schema, so usually none).
    pub async fn schema(&self, db: &str, exclude: &[&str]) -> String {
        let extra: Vec<&str> = exclude
            .iter()
            .flat_map(|t| ["--exclude-table", t])
            .collect();
        common::schema::schema_only_dump(self.env.pg.port(), db, &extra).await
    }

    /// Asserts that two databases have the same schema, showing the first difference.
    pub async fn assert_same_schema(&self, a: &str, b: &str, exclude: &[&str]) {
        let (sa, sb) = (self.schema(a, exclude).await, self.schema(b, exclude).await);
        if sa != sb {
            let first = sa
                .lines()
                .zip(sb.lines())
                .position(|(x, y)| x != y)
                .unwrap_or_else(|| sa.lines().count().min(sb.lines().count()));
            panic!(
                "schemas of {a} and {b} differ from line {first}\n--- {a} ---\n{sa}\n--- {b} ---\n{sb}"
            );
        }
    }
}

/// A tool command: program, arguments, environment, working directory. Inherited `PG*`
/// variables are removed so the developer's shell cannot change what the tool connects to.
pub struct Tool {
    cmd: Command,
    shown: String,
}

impl Tool {
    pub fn new(program: impl AsRef<Path>) -> Tool {
        let program = program.as_ref();
        let mut cmd = Command::new(program);
        pg::strip_pg_env(&mut cmd);
        cmd.env_remove("DATABASE_URL");
        Tool {
            cmd,
            shown: program.display().to_string(),
        }
    }

    pub fn arg(mut self, a: impl AsRef<std::ffi::OsStr>) -> Tool {
        self.shown.push(' ');
        self.shown.push_str(&a.as_ref().to_string_lossy());
        self.cmd.arg(a);
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Tool
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        for a in args {
            self = self.arg(a);
        }
        self
    }

    pub fn env(mut self, k: &str, v: impl AsRef<std::ffi::OsStr>) -> Tool {
        self.cmd.env(k, v);
        self
    }

    pub fn cwd(mut self, dir: impl AsRef<Path>) -> Tool {
        self.cmd.current_dir(dir);
        self
    }

    /// Runs the command to completion (on a blocking thread) and returns what it printed.
    pub async fn run(self) -> Run {
        let Tool { mut cmd, shown } = self;
        let started = Instant::now();
        let out = tokio::task::spawn_blocking(move || pg::run(&mut cmd, None, TOOL_TIMEOUT))
            .await
            .expect("tool thread")
            .unwrap_or_else(|e| panic!("spawn {shown}: {e}"));
        Run {
            shown,
            out,
            took: started.elapsed(),
        }
    }

    /// Runs it and asserts it succeeded.
    pub async fn ok(self) -> Run {
        let run = self.run().await;
        assert!(run.success(), "expected success:\n{run}");
        run
    }

    /// Runs it and asserts it failed.
    pub async fn fails(self) -> Run {
        let run = self.run().await;
        assert!(!run.success(), "expected failure:\n{run}");
        run
    }
}

/// What one tool command did.
pub struct Run {
    pub shown: String,
    pub out: Output,
    pub took: Duration,
}

impl Run {
    pub fn success(&self) -> bool {
        self.out.status.success()
    }

    /// stdout and stderr together, as the user would read them in a terminal.
    pub fn text(&self) -> String {
        format!(
            "{}\n{}",
            String::from_utf8_lossy(&self.out.stdout),
            String::from_utf8_lossy(&self.out.stderr)
        )
    }

    /// Asserts the output contains each of `needles`.
    pub fn assert_says(&self, needles: &[&str]) {
        let text = self.text();
        for n in needles {
            assert!(text.contains(n), "expected {n:?} in the output of:\n{self}");
        }
    }

    /// Asserts the output contains none of `needles`.
    pub fn assert_silent_on(&self, needles: &[&str]) {
        let text = self.text();
        for n in needles {
            assert!(
                !text.contains(n),
                "did not expect {n:?} in the output of:\n{self}"
            );
        }
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "$ {}\n({:.1?}) {}",
            self.shown,
            self.took,
            pg::output_text(&self.out)
        )
    }
}

/// The application: a session straight on PostgreSQL that runs one short write on the big
/// table every few milliseconds and records how long each one waited.
pub struct Writer {
    stop: Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<WriterReport>,
}

#[derive(Debug)]
pub struct WriterReport {
    pub writes: u64,
    pub max_wait: Duration,
    pub errors: Vec<String>,
}

impl Writer {
    /// Starts writing `sql` (no parameters, e.g. an UPDATE of one row) in `db` as the superuser.
    pub async fn start(e2e: &E2e, db: &str, sql: &str) -> Writer {
        let client = common::connect(&format!(
            "host=127.0.0.1 port={} user={} dbname={db} connect_timeout=10",
            e2e.env.pg.port(),
            pg::ADMIN_USER
        ))
        .await;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let sql = sql.to_owned();
        let task = tokio::spawn(async move {
            let mut report = WriterReport {
                writes: 0,
                max_wait: Duration::ZERO,
                errors: Vec::new(),
            };
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                let t = Instant::now();
                if let Err(e) = client.batch_execute(&sql).await {
                    report.errors.push(e.to_string());
                }
                report.max_wait = report.max_wait.max(t.elapsed());
                report.writes += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            report
        });
        Writer { stop, task }
    }

    /// Stops the writer and asserts it never waited longer than the guard's `lock_timeout`
    /// (default 2 s) plus 1 s, and never failed.
    pub async fn stop_and_check(self) -> WriterReport {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let report = self.task.await.expect("writer task");
        let bound =
            ddlgate::config::Config::default().guard.lock_timeout_ms + Duration::from_secs(1);
        assert!(report.writes > 0, "the writer never wrote: {report:?}");
        assert!(report.errors.is_empty(), "the writer failed: {report:?}");
        assert!(
            report.max_wait <= bound,
            "the writer waited {:?}, more than lock_timeout + 1 s = {bound:?}: {report:?}",
            report.max_wait
        );
        report
    }
}

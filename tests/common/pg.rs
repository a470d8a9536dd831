//! Real-PostgreSQL test harness: owns finding the server binaries, the
//! once-per-target-dir template cluster, and the per-test clusters started
//! from it (ports, roles, pg_hba, logs, teardown, orphan cleanup).
//!
//! Used from integration-test binaries as `mod common;` where
//! `tests/common/mod.rs` contains `pub mod pg;`.
//!
//! How it works:
//! * Binaries: `$DDLGATE_PG_BINDIR`, else `pg_config --bindir`, else the
//!   highest `/usr/lib/postgresql/*/bin` that has `initdb` and `postgres`.
//! * `initdb` runs once per cargo target dir: the result (with the test roles
//!   and `pg_hba.conf` already set up) is published atomically by `rename` as
//!   `$CARGO_TARGET_TMPDIR/pg-template-<major>-v1`. Every [`PgCluster::start`]
//!   copies that template (`cp -a`) into a fresh directory under
//!   `<temp dir>/ddlgate-tests-<uid>/` and starts it on a free port.
//! * As root, `initdb`/`pg_ctl` refuse to run, so they run as
//!   `$DDLGATE_PG_USER` (or `postgres`) via `runuser -u <user> --`, and the
//!   cluster directories are `chown`ed to that user.
//! * Clusters are stopped (`-m immediate`) and deleted on drop. Directories
//!   left behind by killed test runs are removed (and their servers stopped)
//!   once they are older than two hours and their test process is gone.
//!
//! Environment knobs: `DDLGATE_PG_BINDIR`, `DDLGATE_PG_USER` (see above) and
//! `DDLGATE_PG_KEEP=1` (keep cluster directories after the test, for
//! debugging; the servers are still stopped).

// Every integration-test binary compiles its own copy of this module and uses
// only part of the API; without this each binary would warn about the rest
// (and `cargo clippy --all-targets -- -D warnings` would fail).
#![allow(dead_code)]

use std::ffi::OsString;
use std::fs;
use std::io::{self, Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Once, OnceLock, mpsc};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Superuser (initdb bootstrap user); trust auth from 127.0.0.1 and the socket.
pub const ADMIN_USER: &str = "ddlgate_admin";
/// LOGIN role with `trust` auth over TCP.
pub const TRUST_USER: &str = "trust_user";
/// LOGIN role, password `md5pass` stored as an MD5 hash, hba method `md5`.
pub const MD5_USER: &str = "md5_user";
/// LOGIN role, password `scrampass` stored as SCRAM, hba method `scram-sha-256`.
pub const SCRAM_USER: &str = "scram_user";

const HOST: &str = "127.0.0.1";
/// Bump when the template's contents (config, roles, hba) change, so that
/// existing target dirs build a new template instead of reusing a stale one.
const TEMPLATE_REV: &str = "v1";
/// Directories of killed test runs older than this are cleaned up.
const ORPHAN_AGE: Duration = Duration::from_secs(2 * 60 * 60);
/// `pg_ctl -t`: generous because CI machines can be slow and overloaded.
const PG_CTL_TIMEOUT_SECS: &str = "60";
/// Backstop for every spawned program, so that a wedged child cannot hang
/// the test run forever (pg_ctl has its own, shorter timeout).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(180);
const PSQL_TIMEOUT: Duration = Duration::from_secs(120);
/// Fresh-port attempts when another process grabs our port between
/// `free_port()` and the postmaster's bind.
const START_ATTEMPTS: u32 = 8;
/// For `restart()` the port is fixed, so keep retrying for a while instead.
const RESTART_ATTEMPTS: u32 = 40;

/// Appended to the template's postgresql.conf. Durability is irrelevant for
/// throwaway clusters, and small settings let many clusters run side by side.
/// Port and socket directory differ per cluster, so they live in
/// `cluster.conf`, included last so that it wins.
const CONF_ADDITIONS: &str = "
# --- ddlgate test harness ---
listen_addresses = '127.0.0.1'
fsync = off
synchronous_commit = off
full_page_writes = off
shared_buffers = 16MB
max_connections = 60
logging_collector = off
include_if_exists = 'cluster.conf'
";

/// Replaces initdb's pg_hba.conf: one line per test role with its method.
const PG_HBA: &str = "\
# ddlgate test harness: every role gets exactly one auth method.
local all all                         trust
host  all ddlgate_admin 127.0.0.1/32 trust
host  all trust_user    127.0.0.1/32 trust
host  all md5_user      127.0.0.1/32 md5
host  all scram_user    127.0.0.1/32 scram-sha-256
";

/// Run once, as `ddlgate_admin`, while building the template.
const SETUP_SQL: &str = "
SET password_encryption = 'md5';
CREATE ROLE md5_user LOGIN PASSWORD 'md5pass';
SET password_encryption = 'scram-sha-256';
CREATE ROLE scram_user LOGIN PASSWORD 'scrampass';
CREATE ROLE trust_user LOGIN;
-- PG15+ no longer lets everyone create objects in schema public.
GRANT CREATE ON DATABASE postgres TO trust_user, md5_user, scram_user;
GRANT ALL ON SCHEMA public TO trust_user, md5_user, scram_user;
";

/// Password of a harness role, if it has one.
pub fn password_for(user: &str) -> Option<&'static str> {
    match user {
        MD5_USER => Some("md5pass"),
        SCRAM_USER => Some("scrampass"),
        _ => None,
    }
}

/// A port on 127.0.0.1 that was free a moment ago. Another process may take
/// it before the caller binds it, so callers that can should retry on
/// "address in use" (`PgCluster::start` does).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind((HOST, 0)).expect("bind 127.0.0.1:0 to find a free port");
    listener
        .local_addr()
        .expect("local_addr of an ephemeral listener")
        .port()
}

/// A running PostgreSQL cluster private to one test. Stopped and deleted on
/// drop.
pub struct PgCluster {
    dir: PathBuf,
    data: PathBuf,
    log_path: PathBuf,
    port: u16,
    bindir: PathBuf,
    major: u32,
    /// `Some(user)` when the harness runs as root and starts the server as
    /// that user.
    run_as: Option<String>,
}

impl PgCluster {
    /// Starts a fresh cluster copied from the template (built on first use).
    pub fn start() -> PgCluster {
        Self::start_prepared(|_| {})
    }

    /// Like [`PgCluster::start`], with `ssl = on` and the given PEM certificate (chain) and
    /// private key as `server.crt`/`server.key` in the data directory. pg_hba's `host` lines
    /// match TLS and plaintext connections alike.
    pub fn start_with_ssl(cert_pem: &str, key_pem: &str) -> PgCluster {
        Self::start_prepared(|data| {
            fs::write(data.join("server.crt"), cert_pem).expect("write server.crt");
            let key = data.join("server.key");
            fs::write(&key, key_pem).expect("write server.key");
            // PostgreSQL refuses a key file others can read.
            fs::set_permissions(&key, fs::Permissions::from_mode(0o600))
                .expect("chmod 0600 server.key");
            // postgresql.auto.conf is read last, so this wins over the template's settings.
            let mut conf = fs::OpenOptions::new()
                .append(true)
                .open(data.join("postgresql.auto.conf"))
                .expect("open postgresql.auto.conf");
            conf.write_all(
                b"ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n",
            )
            .expect("append ssl settings");
        })
    }

    /// Copies the template, lets `prepare` adjust the data directory, then starts the server.
    fn start_prepared(prepare: impl FnOnce(&Path)) -> PgCluster {
        let env = pg_env();
        let template = template_dir();
        let dir = make_unique_dir("c");
        // Constructed before the server starts so that Drop removes the
        // directory if anything below panics.
        let mut cluster = PgCluster {
            data: dir.join("data"),
            log_path: dir.join("server.log"),
            dir,
            port: 0,
            bindir: env.bindir.clone(),
            major: env.major,
            run_as: env.run_as.clone(),
        };
        cp_a(&template.join("data"), &cluster.data);
        prepare(&cluster.data);
        chown_for_server(&cluster.dir);
        cluster.port = start_postmaster(&cluster.data, &cluster.dir, &cluster.log_path, None);
        cluster
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn host(&self) -> &str {
        HOST
    }

    /// Server major version, e.g. 15.
    pub fn major_version(&self) -> u32 {
        self.major
    }

    /// The cluster's own directory: `data/` (PGDATA), `server.log` and the
    /// Unix socket.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// key=value connection string (tokio-postgres and libpq) for `dbname=postgres`.
    pub fn conn_str(&self, user: &str, password: Option<&str>) -> String {
        let mut s = format!(
            "host={HOST} port={} user={} dbname=postgres",
            self.port,
            conn_value(user)
        );
        if let Some(password) = password {
            s.push_str(" password=");
            s.push_str(&conn_value(password));
        }
        s
    }

    /// Connection string for the superuser `ddlgate_admin` (trust).
    pub fn admin_conn_str(&self) -> String {
        self.conn_str(ADMIN_USER, None)
    }

    /// `pg_ctl stop -m immediate`: the server dies without a shutdown
    /// checkpoint, like a crash, and open connections are cut. Because the
    /// clusters run with `synchronous_commit = off`, transactions committed
    /// just before may be lost; tests that need them to survive should
    /// `SET synchronous_commit = on` in that session.
    pub fn stop_immediate(&self) {
        let out = pg_ctl_stop(pg_env(), &self.data, &self.dir, "immediate")
            .expect("spawn pg_ctl stop -m immediate");
        if !out.status.success() {
            panic!(
                "pg_ctl stop -m immediate failed for {}\n{}\n--- server log tail ---\n{}",
                self.dir.display(),
                output_text(&out),
                log_tail(&self.log_path)
            );
        }
    }

    /// `pg_ctl stop -m fast`: the first half of `pg_ctl restart`. Every backend gets FATAL
    /// 57P01 and the server checkpoints before it exits.
    pub fn stop_fast(&self) {
        let out = pg_ctl_stop(pg_env(), &self.data, &self.dir, "fast")
            .expect("spawn pg_ctl stop -m fast");
        assert!(
            out.status.success(),
            "pg_ctl stop -m fast failed for {}\n{}",
            self.dir.display(),
            output_text(&out)
        );
    }

    /// Starts the (stopped) server again on the same port; crash recovery
    /// runs if it was stopped with `stop_immediate`.
    pub fn restart(&self) {
        start_postmaster(&self.data, &self.dir, &self.log_path, Some(self.port));
    }

    /// `kill -9` of the postmaster itself (not a backend), as the OOM killer would do it:
    /// nothing is shut down and no backend is told anything by the postmaster. On Linux each
    /// backend is signalled as its parent dies (`PR_SET_PDEATHSIG`) and exits the next time it
    /// waits: an idle one with FATAL 57P01 "terminating connection due to unexpected postmaster
    /// exit", one in `pg_sleep` silently. A backend busy computing runs on, orphaned, until its
    /// statement waits or ends. Returns the postmaster's pid.
    pub fn kill_postmaster_9(&self) -> u32 {
        let pid = postmaster_pid(&self.data).expect("a running server has a postmaster.pid");
        let out = Command::new("kill")
            .args(["-9", &pid.to_string()])
            .output()
            .expect("spawn kill");
        assert!(out.status.success(), "kill -9 {pid}: {}", output_text(&out));
        pid
    }

    /// Starts the server again after [`PgCluster::kill_postmaster_9`], on the same port (crash
    /// recovery runs). First waits (up to 30 s) until the dead postmaster's orphaned backends
    /// have exited: PostgreSQL refuses to start while a process still has the old shared
    /// memory attached. `postmaster.pid` (and the socket's lock file) still name the dead
    /// postmaster; the server replaces a lock file whose process is gone, but not one whose
    /// process is an unreaped zombie (`kill(pid, 0)` succeeds on it), so then they are removed
    /// here.
    pub fn start_after_crash(&self) {
        let dead = postmaster_pid(&self.data);
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let orphans = processes_in(&self.data);
            let pm_running = dead.is_some_and(postmaster_alive);
            if orphans.is_empty() && !pm_running {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "after 30 s, the crashed server's processes still run: postmaster {pm_running}, \
                 orphans {orphans:?}"
            );
            thread::sleep(Duration::from_millis(20));
        }
        if let Some(pm) = dead
            && process_alive(pm)
        {
            // A zombie nobody reaped: a stale lock file naming it would block the start.
            let _ = fs::remove_file(self.data.join("postmaster.pid"));
            let _ = fs::remove_file(self.dir.join(format!(".s.PGSQL.{}.lock", self.port)));
        }
        self.restart();
    }

    /// The server log so far.
    pub fn log(&self) -> String {
        String::from_utf8_lossy(&fs::read(&self.log_path).unwrap_or_default()).into_owned()
    }

    pub fn bindir() -> PathBuf {
        pg_env().bindir.clone()
    }

    pub fn psql_path() -> PathBuf {
        pg_env().psql.clone()
    }

    /// `pgbench`, if installed (bindir first, then PATH).
    pub fn pgbench_path() -> Option<PathBuf> {
        pg_env().pgbench.clone()
    }

    /// Runs `psql -X -w -h 127.0.0.1 -p <port> -U <user> -d postgres
    /// <extra_args>` with `PGPASSWORD` for harness roles. `port` may be a
    /// proxy's port instead of the cluster's. `-w` makes psql fail instead of
    /// prompting on the terminal when a password is missing. Killed after
    /// 120 s (then the status reports the signal and stderr says so).
    pub fn psql(&self, port: u16, user: &str, extra_args: &[&str], stdin: Option<&[u8]>) -> Output {
        run_psql(port, user, extra_args, stdin)
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        // Never panic here: Drop also runs while a failed test unwinds.
        if self.data.join("postmaster.pid").exists() {
            let _ = pg_ctl_stop(pg_env(), &self.data, &self.dir, "immediate");
        }
        if std::env::var_os("DDLGATE_PG_KEEP").is_some_and(|v| v == "1") {
            eprintln!("DDLGATE_PG_KEEP=1: keeping {}", self.dir.display());
            return;
        }
        if let Err(e) = fs::remove_dir_all(&self.dir) {
            eprintln!("warning: could not remove {}: {e}", self.dir.display());
        }
    }
}

// ---------------------------------------------------------------------------
// Environment: binaries, version, run-as user, scratch parent directory.

struct PgEnv {
    bindir: PathBuf,
    psql: PathBuf,
    pgbench: Option<PathBuf>,
    major: u32,
    run_as: Option<String>,
    /// `runuser`, resolved once (root's PATH may lack /usr/sbin).
    runuser: PathBuf,
    /// `<temp dir>/ddlgate-tests-<uid>`: per uid, so that root and normal
    /// users never fight over ownership or permissions of one shared parent.
    parent: PathBuf,
}

fn pg_env() -> &'static PgEnv {
    static ENV: OnceLock<PgEnv> = OnceLock::new();
    static CLEANUP: Once = Once::new();
    let env = ENV.get_or_init(PgEnv::detect);
    // Outside get_or_init, and cleanup never calls pg_env(): both OnceLock
    // and Once deadlock on re-entry.
    CLEANUP.call_once(|| env.cleanup_orphans());
    env
}

impl PgEnv {
    fn detect() -> PgEnv {
        let bindir = find_bindir();
        let major = server_major_version(&bindir);
        let psql = find_program(&bindir, "psql").unwrap_or_else(|| {
            panic!(
                "psql not found in {} or PATH: install the PostgreSQL client \
                 (`sudo apt-get install postgresql-client`) or run scripts/test.sh",
                bindir.display()
            )
        });
        let pgbench = find_program(&bindir, "pgbench");
        let uid = current_uid();
        let run_as = (uid == 0).then(server_user);
        let runuser = if run_as.is_some() {
            find_in_path("runuser")
                .or_else(|| {
                    ["/usr/sbin/runuser", "/sbin/runuser"]
                        .iter()
                        .map(PathBuf::from)
                        .find(|p| p.is_file())
                })
                .expect("running as root needs `runuser` (util-linux) to start PostgreSQL as an unprivileged user")
        } else {
            PathBuf::new()
        };
        let parent = std::env::temp_dir().join(format!("ddlgate-tests-{uid}"));
        fs::create_dir_all(&parent).unwrap_or_else(|e| panic!("create {}: {e}", parent.display()));
        // The server user must be able to traverse into its cluster dirs.
        fs::set_permissions(&parent, fs::Permissions::from_mode(0o755))
            .unwrap_or_else(|e| panic!("chmod 0755 {}: {e}", parent.display()));
        let env = PgEnv {
            bindir,
            psql,
            pgbench,
            major,
            run_as,
            runuser,
            parent,
        };
        env.check_parent_reachable();
        env
    }

    /// As root, fail early and clearly if the server user cannot reach the
    /// scratch parent (e.g. TMPDIR points below /root).
    fn check_parent_reachable(&self) {
        let Some(user) = &self.run_as else { return };
        let mut cmd = Command::new(&self.runuser);
        cmd.args(["-u", user, "--", "test", "-x"])
            .arg(&self.parent)
            .current_dir("/");
        let ok = run(&mut cmd, None, COMMAND_TIMEOUT).is_ok_and(|o| o.status.success());
        if !ok {
            panic!(
                "user {user} cannot traverse {}; PostgreSQL runs as {user} when the tests run as \
                 root. Make every parent directory world-executable or point TMPDIR elsewhere.",
                self.parent.display()
            );
        }
    }

    /// Command for a server program (`initdb`, `pg_ctl`), run as the server
    /// user when we are root, from a directory that user owns (the programs
    /// complain if they cannot access their working directory).
    fn server_command(&self, program: &str, cwd: &Path) -> Command {
        let path = self.bindir.join(program);
        let mut cmd = match &self.run_as {
            Some(user) => {
                let mut c = Command::new(&self.runuser);
                c.args(["-u", user, "--"]).arg(path);
                c
            }
            None => Command::new(path),
        };
        cmd.current_dir(cwd);
        strip_pg_env(&mut cmd);
        // English messages, so that port-clash detection in the log works.
        cmd.env("LC_ALL", "C").env("LANG", "C");
        cmd
    }

    /// Best effort, once per process: remove cluster/build dirs of dead test
    /// processes older than ORPHAN_AGE, stopping their server first if a
    /// killed test left it running.
    fn cleanup_orphans(&self) {
        // Liveness checks use /proc; without it, do nothing rather than guess.
        if !Path::new("/proc/self").exists() {
            return;
        }
        let Ok(entries) = fs::read_dir(&self.parent) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(owner) = owner_pid_from_name(&name) else {
                continue;
            };
            if !is_older_than(&entry.path(), ORPHAN_AGE) || process_alive(owner) {
                continue;
            }
            let dir = entry.path();
            let data = dir.join("data");
            if let Some(pm) = postmaster_pid(&data)
                && postmaster_alive(pm)
            {
                let _ = pg_ctl_stop(self, &data, &dir, "immediate");
                if postmaster_alive(pm) {
                    continue;
                }
            }
            let _ = fs::remove_dir_all(&dir);
        }
        // Staging copies of a template publish that was killed midway.
        let root = template_root(self);
        if let Ok(entries) = fs::read_dir(&root) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with("pg-template-")
                    && name.contains(".tmp-")
                    && is_older_than(&entry.path(), ORPHAN_AGE)
                {
                    let _ = fs::remove_dir_all(entry.path());
                }
            }
        }
    }
}

fn find_bindir() -> PathBuf {
    let has_server = |d: &Path| d.join("initdb").is_file() && d.join("postgres").is_file();
    if let Some(dir) = std::env::var_os("DDLGATE_PG_BINDIR").filter(|v| !v.is_empty()) {
        let dir = PathBuf::from(dir);
        if !has_server(&dir) {
            panic!(
                "DDLGATE_PG_BINDIR={} does not contain initdb and postgres",
                dir.display()
            );
        }
        return dir;
    }
    if let Ok(out) = run(
        Command::new("pg_config").arg("--bindir"),
        None,
        COMMAND_TIMEOUT,
    ) && out.status.success()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if has_server(&dir) {
            return dir;
        }
    }
    // Debian/Ubuntu layout; pick the highest version, compared numerically
    // ("9.6" < "10" < "17").
    let mut best: Option<(Vec<u32>, PathBuf)> = None;
    if let Ok(entries) = fs::read_dir("/usr/lib/postgresql") {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(version) = name
                .split('.')
                .map(|p| p.parse::<u32>().ok())
                .collect::<Option<Vec<u32>>>()
            else {
                continue;
            };
            let dir = entry.path().join("bin");
            if has_server(&dir) && best.as_ref().is_none_or(|(v, _)| version > *v) {
                best = Some((version, dir));
            }
        }
    }
    if let Some((_, dir)) = best {
        return dir;
    }
    panic!(
        "PostgreSQL server binaries (initdb, postgres) not found: checked $DDLGATE_PG_BINDIR, \
         `pg_config --bindir` and /usr/lib/postgresql/*/bin. Run the tests with \
         `scripts/test.sh` (it installs PostgreSQL on Debian/Ubuntu when run as root), install \
         it yourself (`sudo apt-get install postgresql`), or set DDLGATE_PG_BINDIR to the \
         directory containing initdb and postgres."
    );
}

/// Parses `postgres (PostgreSQL) 15.18 (Debian ...)` or `... 17beta1`.
fn server_major_version(bindir: &Path) -> u32 {
    let postgres = bindir.join("postgres");
    let out = run(
        Command::new(&postgres).arg("--version"),
        None,
        COMMAND_TIMEOUT,
    )
    .unwrap_or_else(|e| panic!("run {} --version: {e}", postgres.display()));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.split(')')
        .nth(1)
        .and_then(|rest| {
            let digits: String = rest
                .trim_start()
                .chars()
                .take_while(|c| c.is_ascii_digit())
                .collect();
            digits.parse().ok()
        })
        .unwrap_or_else(|| panic!("cannot parse PostgreSQL version from {text:?}"))
}

/// `bindir/<name>` if present, else the first `<name>` on PATH.
fn find_program(bindir: &Path, name: &str) -> Option<PathBuf> {
    let candidate = bindir.join(name);
    if candidate.is_file() {
        return Some(candidate);
    }
    find_in_path(name)
}

fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn current_uid() -> u32 {
    // `id -u` instead of libc::geteuid, to avoid a libc dependency.
    let out = run(Command::new("id").arg("-u"), None, COMMAND_TIMEOUT).expect("run `id -u`");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("`id -u` printed a number")
}

/// The unprivileged account that runs the servers when we are root.
fn server_user() -> String {
    let user_uid = |user: &str| -> Option<u32> {
        let out = run(Command::new("id").args(["-u", user]), None, COMMAND_TIMEOUT).ok()?;
        if !out.status.success() {
            return None;
        }
        String::from_utf8_lossy(&out.stdout).trim().parse().ok()
    };
    let (user, explicit) = match std::env::var("DDLGATE_PG_USER") {
        Ok(u) if !u.is_empty() => (u, true),
        _ => ("postgres".to_string(), false),
    };
    match user_uid(&user) {
        Some(0) => panic!("DDLGATE_PG_USER={user} is root; PostgreSQL refuses to run as root"),
        Some(_) => user,
        None if explicit => panic!("DDLGATE_PG_USER={user}: no such user"),
        None => panic!(
            "running as root, but there is no `postgres` account to run PostgreSQL as \
             (initdb/postgres refuse to run as root). Run `scripts/test.sh` (it creates one) or \
             set DDLGATE_PG_USER to an unprivileged user."
        ),
    }
}

// ---------------------------------------------------------------------------
// Template: initdb once per target dir, shared by all test processes.

/// Where templates are cached: the cargo target dir's tmp (survives test
/// runs, removed by `cargo clean`).
fn template_root(env: &PgEnv) -> PathBuf {
    match option_env!("CARGO_TARGET_TMPDIR") {
        Some(dir) => PathBuf::from(dir),
        None => env.parent.clone(),
    }
}

fn template_dir() -> &'static Path {
    static TEMPLATE: OnceLock<PathBuf> = OnceLock::new();
    // OnceLock makes the other test threads of this process wait for the
    // first build; other processes are handled by the atomic rename.
    TEMPLATE.get_or_init(build_or_reuse_template)
}

fn build_or_reuse_template() -> PathBuf {
    let env = pg_env();
    let root = template_root(env);
    let name = format!("pg-template-{}-{TEMPLATE_REV}", env.major);
    let published = root.join(&name);
    // Only complete templates are ever renamed into place.
    if published.join("data/PG_VERSION").is_file() {
        return published;
    }

    // Build under the scratch parent, not the target dir: when we are root
    // the server user must reach it, and the target dir may sit below an
    // inaccessible home directory.
    let build = make_unique_dir("b");
    chown_for_server(&build);
    let data = build.join("data");
    let log = build.join("server.log");
    let mut initdb = env.server_command("initdb", &build);
    initdb
        .arg("-D")
        .arg(&data)
        .args(["-U", ADMIN_USER, "--auth=trust", "-E", "UTF8", "--locale=C"])
        // No fsync (throwaway data) and 1 MB WAL segments: the template is
        // copied for every cluster, and a 16 MB segment would be most of it.
        .args(["--no-sync", "--wal-segsize=1"]);
    run_checked(&mut initdb, "initdb");

    let conf = data.join("postgresql.conf");
    let mut f = fs::OpenOptions::new()
        .append(true)
        .open(&conf)
        .unwrap_or_else(|e| panic!("open {}: {e}", conf.display()));
    f.write_all(CONF_ADDITIONS.as_bytes())
        .unwrap_or_else(|e| panic!("append to {}: {e}", conf.display()));
    drop(f);
    // Truncating an existing file keeps its owner (the server user).
    fs::write(data.join("pg_hba.conf"), PG_HBA).expect("write template pg_hba.conf");

    let port = start_postmaster(&data, &build, &log, None);
    let out = run_psql(
        port,
        ADMIN_USER,
        &["-q", "-v", "ON_ERROR_STOP=1"],
        Some(SETUP_SQL.as_bytes()),
    );
    if !out.status.success() {
        let _ = pg_ctl_stop(env, &data, &build, "immediate");
        panic!(
            "template setup SQL failed:\n{}\n--- server log tail ---\n{}",
            output_text(&out),
            log_tail(&log)
        );
    }
    // Fast (clean) shutdown writes a checkpoint, so clusters copied from the
    // template start without crash recovery.
    let out = pg_ctl_stop(env, &data, &build, "fast").expect("spawn pg_ctl stop");
    if !out.status.success() {
        panic!(
            "stopping the template cluster failed:\n{}\n--- server log tail ---\n{}",
            output_text(&out),
            log_tail(&log)
        );
    }
    let _ = fs::remove_file(data.join("cluster.conf"));
    let _ = fs::remove_file(data.join("postmaster.opts"));

    // Publish: copy next to the final name (same filesystem), then rename,
    // which is atomic; if another process won the race, use its template.
    fs::create_dir_all(&root).unwrap_or_else(|e| panic!("create {}: {e}", root.display()));
    let staging = root.join(format!(
        "{name}.tmp-{}-{}",
        std::process::id(),
        unique_suffix()
    ));
    fs::create_dir(&staging).unwrap_or_else(|e| panic!("create {}: {e}", staging.display()));
    cp_a(&data, &staging.join("data"));
    if let Err(e) = fs::rename(&staging, &published) {
        let _ = fs::remove_dir_all(&staging);
        if !published.join("data/PG_VERSION").is_file() {
            panic!(
                "could not publish template {}: {e} (delete it if it is broken)",
                published.display()
            );
        }
    }
    let _ = fs::remove_dir_all(&build);
    published
}

// ---------------------------------------------------------------------------
// Server start/stop.

/// Starts the postmaster of `data` with its socket in `sock_dir`, logging to
/// `log`, on `fixed_port` or a fresh free port; retries when the port turns
/// out to be taken. Returns the port. Panics with the log tail on failure.
fn start_postmaster(data: &Path, sock_dir: &Path, log: &Path, fixed_port: Option<u16>) -> u16 {
    let env = pg_env();
    let attempts = if fixed_port.is_some() {
        RESTART_ATTEMPTS
    } else {
        START_ATTEMPTS
    };
    for attempt in 1..=attempts {
        let port = fixed_port.unwrap_or_else(free_port);
        write_cluster_conf(data, sock_dir, port);
        let log_len_before = fs::metadata(log).map(|m| m.len()).unwrap_or(0);
        let mut cmd = env.server_command("pg_ctl", sock_dir);
        cmd.arg("start")
            .arg("-w")
            .args(["-t", PG_CTL_TIMEOUT_SECS])
            .arg("-D")
            .arg(data)
            .arg("-l")
            .arg(log);
        let out = run(&mut cmd, None, COMMAND_TIMEOUT).expect("spawn pg_ctl start");
        if out.status.success() {
            return port;
        }
        let new_log = fs::read(log)
            .map(|bytes| {
                let start = (log_len_before as usize).min(bytes.len());
                String::from_utf8_lossy(&bytes[start..]).into_owned()
            })
            .unwrap_or_default();
        let port_clash = new_log.contains("could not bind")
            || new_log.contains("Address already in use")
            || new_log.contains("could not create any TCP/IP sockets");
        if port_clash && attempt < attempts {
            if fixed_port.is_some() {
                thread::sleep(Duration::from_millis(250));
            }
            continue;
        }
        panic!(
            "pg_ctl start failed for {} (port {port}, attempt {attempt}/{attempts})\n{}\n\
             --- server log tail ---\n{}",
            data.display(),
            output_text(&out),
            log_tail(log)
        );
    }
    unreachable!("the last attempt either returns or panics")
}

/// Per-cluster settings, included from the template's postgresql.conf.
fn write_cluster_conf(data: &Path, sock_dir: &Path, port: u16) {
    let path = data.join("cluster.conf");
    let sock = sock_dir.display().to_string().replace('\'', "''");
    fs::write(
        &path,
        format!("port = {port}\nunix_socket_directories = '{sock}'\n"),
    )
    .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    // Readable by the server user even if we (root) created it with a tight umask.
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}

/// `pg_ctl stop -m <mode> -w`. Never panics (used from Drop); needs the
/// environment to be initialized already, which it is whenever a server
/// exists.
fn pg_ctl_stop(env: &PgEnv, data: &Path, cwd: &Path, mode: &str) -> io::Result<Output> {
    let mut cmd = env.server_command("pg_ctl", cwd);
    cmd.arg("stop")
        .arg("-w")
        .args(["-t", PG_CTL_TIMEOUT_SECS, "-m", mode])
        .arg("-D")
        .arg(data);
    run(&mut cmd, None, COMMAND_TIMEOUT)
}

/// `psql -X -w -h 127.0.0.1 -p <port> -U <user> -d postgres <extra_args>`, with the
/// harness role's password and no inherited `PG*` variables.
fn psql_command(port: u16, user: &str, extra_args: &[&str]) -> Command {
    let env = pg_env();
    let mut cmd = Command::new(&env.psql);
    strip_pg_env(&mut cmd);
    cmd.args([
        "-X",
        "-w",
        "-h",
        HOST,
        "-p",
        &port.to_string(),
        "-U",
        user,
        "-d",
        "postgres",
    ])
    .args(extra_args)
    .env("PGCONNECT_TIMEOUT", "10");
    if let Some(password) = password_for(user) {
        cmd.env("PGPASSWORD", password);
    }
    cmd
}

/// Runs psql to completion (killed after 120 s). `port` may be a proxy's.
pub fn run_psql(port: u16, user: &str, extra_args: &[&str], stdin: Option<&[u8]>) -> Output {
    run(
        &mut psql_command(port, user, extra_args),
        stdin,
        PSQL_TIMEOUT,
    )
    .unwrap_or_else(|e| panic!("spawn {}: {e}", pg_env().psql.display()))
}

/// `psql -X -w -d <conninfo> <extra_args>`: for what only a libpq connection string can say
/// (`sslmode`, `sslrootcert`, `channel_binding`, …). Like `psql_command`, no inherited `PG*`
/// variables, and the harness role's password in `PGPASSWORD`.
fn psql_conninfo_command(conninfo: &str, user: &str, extra_args: &[&str]) -> Command {
    let env = pg_env();
    let mut cmd = Command::new(&env.psql);
    strip_pg_env(&mut cmd);
    cmd.args(["-X", "-w", "-d", conninfo])
        .args(extra_args)
        .env("PGCONNECT_TIMEOUT", "10");
    if let Some(password) = password_for(user) {
        cmd.env("PGPASSWORD", password);
    }
    cmd
}

/// Runs psql with a libpq connection string to completion (killed after 120 s); `user` only
/// picks the password, the conninfo must name the user itself.
pub fn run_psql_conninfo(
    conninfo: &str,
    user: &str,
    extra_args: &[&str],
    stdin: Option<&[u8]>,
) -> Output {
    run(
        &mut psql_conninfo_command(conninfo, user, extra_args),
        stdin,
        PSQL_TIMEOUT,
    )
    .unwrap_or_else(|e| panic!("spawn {}: {e}", pg_env().psql.display()))
}

/// Starts psql with a libpq connection string without waiting, stdout/stderr piped.
pub fn spawn_psql_conninfo(conninfo: &str, user: &str, extra_args: &[&str]) -> std::process::Child {
    psql_conninfo_command(conninfo, user, extra_args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", pg_env().psql.display()))
}

/// Starts psql without waiting, stdout/stderr piped, for tests that signal it (Ctrl-C).
pub fn spawn_psql(port: u16, user: &str, extra_args: &[&str]) -> std::process::Child {
    psql_command(port, user, extra_args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", pg_env().psql.display()))
}

// ---------------------------------------------------------------------------
// Small helpers.

/// Creates `<parent>/<prefix>-<pid>-<unique>` with mode 0755. The pid in the
/// name lets orphan cleanup tell whether the owning test process still lives.
fn make_unique_dir(prefix: &str) -> PathBuf {
    let env = pg_env();
    loop {
        let dir = env.parent.join(format!(
            "{prefix}-{}-{}",
            std::process::id(),
            unique_suffix()
        ));
        match fs::create_dir(&dir) {
            Ok(()) => {
                fs::set_permissions(&dir, fs::Permissions::from_mode(0o755))
                    .unwrap_or_else(|e| panic!("chmod 0755 {}: {e}", dir.display()));
                return dir;
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => panic!("create {}: {e}", dir.display()),
        }
    }
}

fn unique_suffix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{n}-{nanos:09}")
}

fn owner_pid_from_name(name: &str) -> Option<u32> {
    let mut parts = name.split('-');
    match parts.next()? {
        "c" | "b" => parts.next()?.parse().ok(),
        _ => None,
    }
}

fn is_older_than(path: &Path, age: Duration) -> bool {
    fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .is_some_and(|elapsed| elapsed > age)
}

fn process_alive(pid: u32) -> bool {
    Path::new("/proc").join(pid.to_string()).exists()
}

/// Running (not a zombie waiting to be reaped) and really a postgres
/// process, which guards against pid reuse. /proc/<pid>/stat is
/// `pid (comm) state ...`.
fn postmaster_alive(pid: u32) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
        return false;
    };
    let comm = &stat[open + 1..close];
    let state = stat[close + 1..].trim_start().chars().next();
    matches!(comm, "postgres" | "postmaster") && !matches!(state, Some('Z' | 'X') | None)
}

/// Live (not zombie) processes whose working directory is `data`: a cluster's postmaster and
/// backends all run in their data directory.
fn processes_in(data: &Path) -> Vec<u32> {
    let Ok(data) = fs::canonicalize(data) else {
        return Vec::new();
    };
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| {
            fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| cwd == data)
                && postmaster_alive(pid)
        })
        .collect()
}

fn postmaster_pid(data: &Path) -> Option<u32> {
    let text = fs::read_to_string(data.join("postmaster.pid")).ok()?;
    text.lines().next()?.trim().parse().ok()
}

/// As root, hands a directory tree to the server user.
fn chown_for_server(dir: &Path) {
    let env = pg_env();
    let Some(user) = &env.run_as else { return };
    let mut cmd = Command::new("chown");
    cmd.arg("-R").arg(format!("{user}:")).arg(dir);
    run_checked(&mut cmd, "chown");
}

/// `cp -a`: keeps modes (PostgreSQL insists on a 0700/0750 data dir) and,
/// as root, ownership.
fn cp_a(from: &Path, to: &Path) {
    let mut cmd = Command::new("cp");
    cmd.arg("-a").arg(from).arg(to);
    run_checked(&mut cmd, "cp -a");
}

/// Runs a command that must succeed; panics with its output otherwise.
fn run_checked(cmd: &mut Command, what: &str) -> Output {
    let out = run(cmd, None, COMMAND_TIMEOUT).unwrap_or_else(|e| panic!("spawn {what}: {e}"));
    if !out.status.success() {
        panic!("{what} failed: {cmd:?}\n{}", output_text(&out));
    }
    out
}

/// Removes PG* variables (PGDATA, PGPORT, PGHOST, PGOPTIONS, PGPASSWORD, ...)
/// inherited from the developer's shell, which would silently change what
/// the server programs and psql do.
pub fn strip_pg_env(cmd: &mut Command) {
    let names: Vec<OsString> = std::env::vars_os()
        .map(|(k, _)| k)
        .filter(|k| k.to_string_lossy().starts_with("PG"))
        .collect();
    for name in names {
        cmd.env_remove(name);
    }
}

/// Quotes a value for a key=value connection string when needed.
fn conn_value(v: &str) -> String {
    if !v.is_empty()
        && !v
            .chars()
            .any(|c| c.is_whitespace() || c == '\'' || c == '\\')
    {
        v.to_string()
    } else {
        format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"))
    }
}

pub fn output_text(out: &Output) -> String {
    format!(
        "status: {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout).trim_end(),
        String::from_utf8_lossy(&out.stderr).trim_end()
    )
}

fn log_tail(log: &Path) -> String {
    let text = String::from_utf8_lossy(&fs::read(log).unwrap_or_default()).into_owned();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// Runs `cmd` with stdin null (or fed `stdin`), capturing stdout/stderr, and
/// kills it after `timeout`. Pipes are drained on threads so that a chatty
/// child cannot deadlock against a full pipe; the readers get a bounded wait
/// because a surviving grandchild could hold the pipes open.
/// Runs `cmd` to completion with `stdin`, stdout and stderr captured; killed after `timeout`
/// (the status then reports the signal).
pub fn run(cmd: &mut Command, stdin: Option<&[u8]>, timeout: Duration) -> io::Result<Output> {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn()?;
    let pid = child.id();
    if let Some(mut pipe) = child.stdin.take() {
        let input = stdin.unwrap_or_default().to_vec();
        // Detached: if the child never reads, the write fails once it exits.
        thread::spawn(move || {
            let _ = pipe.write_all(&input);
        });
    }
    let stdout_rx = drain(child.stdout.take());
    let stderr_rx = drain(child.stderr.take());
    let (status_tx, status_rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = status_tx.send(child.wait());
    });
    let mut timed_out = false;
    let status = match status_rx.recv_timeout(timeout) {
        Ok(status) => status?,
        Err(_) => {
            timed_out = true;
            // The child is not reaped until wait() returns, so the pid is
            // still ours.
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            status_rx
                .recv()
                .map_err(|_| io::Error::other("waiter thread died"))??
        }
    };
    let grace = Duration::from_secs(5);
    let stdout = stdout_rx.recv_timeout(grace).unwrap_or_default();
    let mut stderr = stderr_rx.recv_timeout(grace).unwrap_or_default();
    if timed_out {
        stderr.extend_from_slice(
            format!("\n[pg harness] killed after {} s\n", timeout.as_secs()).as_bytes(),
        );
    }
    Ok(Output {
        status,
        stdout,
        stderr,
    })
}

fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut buf);
        }
        let _ = tx.send(buf);
    });
    rx
}

//! The real ddlgate binary as a child process in front of a test cluster, killed however the
//! test ends: its resident memory is its own, not the test harness's.

use std::time::Duration;

use super::pg::{PgCluster, free_port};

pub struct Binary {
    child: std::process::Child,
    port: u16,
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How to start it beyond the configuration file.
#[derive(Default)]
pub struct Launch<'a> {
    /// Another build than this checkout's test binary (e.g. a release build for figures).
    pub bin: Option<String>,
    /// Extra environment (`DDLGATE__SECTION__KEY` overrides).
    pub env: &'a [(&'a str, &'a str)],
    /// Where its stderr goes (discarded otherwise).
    pub stderr: Option<std::path::PathBuf>,
}

impl Binary {
    /// Starts the binary with `config` as its configuration file; returns once it serves a
    /// session. The directory holding the file lives as long as the returned guard.
    pub async fn start(pg: &PgCluster, config: &str) -> (Binary, tempfile::TempDir) {
        Binary::launch(pg, config, Launch::default()).await
    }

    pub async fn launch(
        pg: &PgCluster,
        config: &str,
        how: Launch<'_>,
    ) -> (Binary, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("ddlgate.toml");
        std::fs::write(&file, config).expect("write config");
        let port = free_port();
        let bin = how
            .bin
            .unwrap_or_else(|| env!("CARGO_BIN_EXE_ddlgate").to_owned());
        let stderr = match &how.stderr {
            Some(path) => std::process::Stdio::from(std::fs::File::create(path).expect("log file")),
            None => std::process::Stdio::null(),
        };
        let child = std::process::Command::new(bin)
            .args([
                "--config",
                file.to_str().expect("path"),
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--upstream",
                &format!("127.0.0.1:{}", pg.port()),
            ])
            .env(
                "DDLGATE__ADMIN__LISTEN",
                format!("127.0.0.1:{}", free_port()),
            )
            .envs(how.env.iter().copied())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start ddlgate");
        let b = Binary { child, port };
        let conn = super::conn_str(port, "trust_user");
        assert!(
            super::eventually(Duration::from_secs(20), || async {
                tokio_postgres::connect(&conn, tokio_postgres::NoTls)
                    .await
                    .is_ok()
            })
            .await,
            "ddlgate starts"
        );
        (b, dir)
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        format!("127.0.0.1:{}", self.port).parse().expect("addr")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident set size of the process, in bytes.
    pub fn rss(&self) -> u64 {
        rss(self.pid())
    }
}

/// Resident set size of process `pid`, in bytes (from /proc/PID/status).
pub fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("VmRSS")
        * 1024
}

/// Runs the ddlgate binary with `args` in `dir` (an offline command: check, rules, config,
/// trace), without a configuration from the environment, and waits for it.
pub fn run_cli(args: &[&str], dir: &std::path::Path) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_ddlgate"))
        .args(args)
        .current_dir(dir)
        .env_remove("DDLGATE_CONFIG")
        .output()
        .expect("run ddlgate")
}

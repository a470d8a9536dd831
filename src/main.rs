//! The `ddlgate` binary: command line, configuration loading, tracing set-up, then
//! [`ddlgate::server::run`]. Everything else lives in the library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use ddlgate::config::{Config, LogFormat, Overrides};

#[derive(Parser, Debug)]
#[command(
    name = "ddlgate",
    version,
    about = "A PostgreSQL proxy that makes schema changes safe"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the proxy (the default when no command is given).
    Serve(ServeArgs),
    /// Check migration files with the proxy's rules and policy, offline. Exits 1 when anything
    /// would be blocked, 2 on usage, configuration or read errors.
    Check(CheckArgs),
    /// Ask a running ddlgate (its admin endpoint, from the configuration) to reload its
    /// configuration. Exit 0 when reloaded, 1 when rejected, 2 when unreachable.
    Reload,
    /// Configuration tools.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Run an UPDATE over a large table safely: keyset batches over its primary key, each its
    /// own short transaction, throttled, resumable after a kill. Exit 0 when done, 1 on a server
    /// error or a table without a usable key, 2 on usage.
    Backfill(BackfillArgs),
    /// Run migration files on a scratch database inside one transaction that is rolled back,
    /// and report per statement the locks it took, the relations it rewrote, its time and
    /// ddlgate's decision. Exits 1 when a statement fails or would be blocked, 2 on usage,
    /// connection or a database without the scratch mark.
    Trace(TraceArgs),
    /// Undo DDL recorded in the undo journal (`[journal]`), newest first, through a running
    /// ddlgate (so the same rules, rewrites and lock guard apply). Exit 0 when everything asked
    /// for was undone (or, with --dry-run, could be), 1 when an entry is refused or its undo
    /// fails, 2 on usage or connection errors.
    Undo(UndoArgs),
    /// List the rule catalog: id, default action, lock taken, what it flags.
    Rules {
        /// Output format.
        #[arg(long, value_enum, default_value = "text")]
        format: RulesFormat,
    },
}

#[derive(Subcommand, Debug)]
enum ConfigCommand {
    /// Validate a configuration file and print the effective policy. Exit 0 when valid, 2
    /// naming the bad key otherwise.
    Check {
        /// The TOML file.
        file: PathBuf,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum RulesFormat {
    Text,
    Markdown,
}

#[derive(clap::Args, Debug)]
struct CheckArgs {
    /// PostgreSQL major version the migrations will run on (e.g. 15); default: a recent one.
    #[arg(long)]
    pg_version: Option<u32>,
    /// Treat every file no tool claims as wrapped in one transaction (psql `-1`), as most
    /// migration tools run them. With an explicit `--tool` every file is that tool's.
    #[arg(long)]
    assume_in_transaction: bool,
    /// The migration tool that runs the files, for its per-file transaction opt-outs; `auto`
    /// reads each file as its layout names a tool without doubt, else as psql would.
    #[arg(long, value_enum, default_value = "auto")]
    tool: ddlgate::check::tool::Tool,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    format: ddlgate::check::Format,
    /// Policy profile to apply (a `[[profiles]]` name from the configuration; default `[policy]`).
    #[arg(long, default_value = "default")]
    profile: String,
    /// Also run the opt-in style rules (prefer-bigint-over-int, prefer-identity,
    /// prefer-text-field, prefer-timestamptz, ban-char-field, prefer-robust-stmts, …) as
    /// warnings, unless the configuration sets their actions.
    #[arg(long)]
    style: bool,
    /// SQL files to check (`-` reads standard input).
    #[arg(required = true)]
    files: Vec<PathBuf>,
}

#[derive(clap::Args, Debug)]
// Exactly one change: the SET list or --delete.
#[command(group(clap::ArgGroup::new("change").required(true).args(["set", "delete"])))]
struct BackfillArgs {
    /// The database: a libpq-style URI (`postgresql://user@host:5432/db`) or `key=value`
    /// string. `sslmode=prefer` (default) and `require` encrypt without checking the server's
    /// certificate, as libpq does; `--ca-file` checks it.
    #[arg(long, env = "DDLGATE_BACKFILL_DATABASE")]
    database: String,
    /// PEM CA certificate(s): require TLS and a server certificate that chains to them and
    /// names the host (libpq's sslmode=verify-full).
    #[arg(long)]
    ca_file: Option<PathBuf>,
    /// The table, as SQL names it (`users`, `app.users`, `'"Odd"'`).
    #[arg(long)]
    table: String,
    /// The SET list, SQL (`"phone = ''"`); it must not assign the key the batches walk.
    #[arg(long)]
    set: Option<String>,
    /// Delete the rows instead of updating them (batched DELETE); needs --where (`--where true`
    /// for every row).
    #[arg(long)]
    delete: bool,
    /// The rows to update or delete, an SQL condition (`"phone IS NULL"`); default every row
    /// for --set, required for --delete.
    #[arg(long = "where")]
    condition: Option<String>,
    /// Rows per batch (one transaction each).
    #[arg(long, default_value_t = 1000)]
    batch_size: u32,
    /// Pause between batches, e.g. `50ms`, `1s`.
    #[arg(long, default_value = "50ms", value_parser = humantime::parse_duration)]
    pause: std::time::Duration,
    /// Before each batch, wait while a replica's replay lag (pg_stat_replication) is above
    /// this, e.g. `10s`. No replicas: no wait.
    #[arg(long, value_parser = humantime::parse_duration)]
    max_lag: Option<std::time::Duration>,
    /// lock_timeout of each batch: a batch waiting longer for a row lock is retried.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    lock_timeout: std::time::Duration,
    /// statement_timeout of each statement.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    statement_timeout: std::time::Duration,
    /// Retries of one batch after lock timeouts or deadlocks before giving up.
    #[arg(long, default_value_t = 10)]
    max_retries: u32,
    /// Start over, even when a run with the same arguments finished or stopped part way.
    #[arg(long)]
    restart: bool,
    /// Schema of ddlgate's progress table (`<schema>.backfill_progress`).
    #[arg(long, default_value = "ddlgate")]
    schema: String,
    /// Progress display on standard error.
    #[arg(long, value_enum, default_value = "auto")]
    progress: ddlgate::backfill::ProgressMode,
    /// How often plain progress lines are written.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    report_every: std::time::Duration,
}

#[derive(clap::Args, Debug)]
struct TraceArgs {
    /// The scratch database (libpq URL or key=value string; from the environment, its password
    /// stays out of the process list). It must be marked:
    /// COMMENT ON DATABASE name IS 'ddlgate:scratch'.
    #[arg(long, env = "DDLGATE_TRACE_DATABASE", hide_env_values = true)]
    database: String,
    /// PEM CA certificate(s): require TLS and a server certificate that chains to them and
    /// names the host (libpq's sslmode=verify-full). Without it, TLS follows the string's
    /// `sslmode` (default prefer) and the certificate is not checked.
    #[arg(long)]
    ca_file: Option<PathBuf>,
    /// Run on a database without the scratch mark (the transaction is still rolled back).
    #[arg(long)]
    allow_non_scratch: bool,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    format: ddlgate::trace::Format,
    /// The migration tool that runs the files (as `ddlgate check`): the transaction context
    /// ddlgate's decisions assume.
    #[arg(long, value_enum, default_value = "auto")]
    tool: ddlgate::check::tool::Tool,
    /// Decide every file no tool claims as wrapped in one transaction (as `ddlgate check`).
    #[arg(long)]
    assume_in_transaction: bool,
    /// Policy profile the decisions use (a `[[profiles]]` name; default `[policy]`).
    #[arg(long, default_value = "default")]
    profile: String,
    /// lock_timeout of the trace's session: a statement that waits this long for another
    /// session's lock fails the trace instead of hanging it.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    lock_timeout: std::time::Duration,
    /// SQL files to trace, in order (`-` reads standard input).
    #[arg(required = true)]
    files: Vec<PathBuf>,
}

#[derive(clap::Args, Debug)]
struct UndoArgs {
    /// Connection URL (or key=value string) of the database, THROUGH ddlgate (its listen
    /// address), e.g. postgres://app@127.0.0.1:6432/app.
    #[arg(long)]
    database: String,
    /// Undo the newest N entries not undone yet (default 1).
    #[arg(long, conflicts_with = "id")]
    last: Option<usize>,
    /// Undo this journal entry.
    #[arg(long)]
    id: Option<i64>,
    /// Print what would run and change nothing.
    #[arg(long)]
    dry_run: bool,
    /// The journal's schema (`journal.schema`).
    #[arg(long, default_value = "ddlgate")]
    schema: String,
    /// PEM CA certificate(s): require TLS and a server certificate that chains to them and
    /// names the host (libpq's sslmode=verify-full).
    #[arg(long)]
    ca_file: Option<PathBuf>,
}

#[derive(clap::Args, Debug, Clone, Default)]
struct ServeArgs {
    /// Configuration file (TOML). Without it, built-in defaults apply; `DDLGATE__SECTION__KEY`
    /// environment variables override either.
    #[arg(long, short = 'c', env = "DDLGATE_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Address to listen on, e.g. 127.0.0.1:6432 (overrides `server.listen`).
    #[arg(long, global = true)]
    listen: Option<SocketAddr>,
    /// Upstream PostgreSQL host:port (overrides `upstream.address`).
    #[arg(long, global = true)]
    upstream: Option<String>,
}

fn main() -> ExitCode {
    // A build with fault injection (`--features failpoints`) arms what `FAILPOINTS` names.
    #[cfg(feature = "failpoints")]
    let _fail_points = fail::FailScenario::setup();
    let cli = Cli::parse();
    let args = match cli.command {
        Some(Command::Serve(args)) => args,
        Some(Command::Check(check)) => return run_check(&cli.serve, check),
        Some(Command::Trace(trace)) => return run_trace(&cli.serve, trace),
        Some(Command::Reload) => return run_reload(&cli.serve),
        Some(Command::Backfill(args)) => return run_backfill(args),
        Some(Command::Undo(undo)) => return run_undo(undo),
        Some(Command::Config(ConfigCommand::Check { file })) => {
            return match Config::load(Some(&file), &Overrides::default()) {
                Ok(config) => {
                    print!("{}", ddlgate::policy::describe_effective(&config));
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("ddlgate: {}: {e}", file.display());
                    ExitCode::from(2)
                }
            };
        }
        Some(Command::Rules { format }) => {
            print!(
                "{}",
                match format {
                    RulesFormat::Text => ddlgate::rules::catalog_text(),
                    RulesFormat::Markdown => ddlgate::rules::catalog_markdown(),
                }
            );
            return ExitCode::SUCCESS;
        }
        None => cli.serve,
    };
    let overrides = Overrides {
        listen: args.listen,
        upstream: args.upstream,
    };
    let config = match Config::load(args.config.as_deref(), &overrides) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ddlgate: {e}");
            return ExitCode::from(2);
        }
    };
    init_tracing(&config);
    // The accept loop, the admin endpoint and the background tasks; sessions run on their own
    // event loops (`server.event_loops`).
    let runtime = match current_thread_runtime() {
        Ok(rt) => rt,
        Err(()) => return ExitCode::FAILURE,
    };
    let source = ddlgate::state::ReloadSource {
        file: args.config.clone(),
        overrides: overrides.clone(),
    };
    match runtime.block_on(ddlgate::server::run(config, source)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ddlgate: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `ddlgate backfill`: the library's run on a current-thread runtime; Ctrl-C stops between
/// statements (the batch in flight is rolled back by the server) and says how to resume.
fn run_backfill(a: BackfillArgs) -> ExitCode {
    let opts = ddlgate::backfill::Options {
        database: a.database,
        ca_file: a.ca_file,
        table: a.table,
        // clap requires exactly one of --set and --delete.
        change: match a.set {
            Some(set) => ddlgate::backfill::Change::Update(set),
            None => ddlgate::backfill::Change::Delete,
        },
        condition: a.condition,
        batch_size: a.batch_size,
        pause: a.pause,
        max_lag: a.max_lag,
        lock_timeout: a.lock_timeout,
        statement_timeout: a.statement_timeout,
        max_retries: a.max_retries,
        restart: a.restart,
        schema: a.schema,
        progress: a.progress,
        report_every: a.report_every,
    };
    let runtime = match current_thread_runtime() {
        Ok(rt) => rt,
        Err(()) => return ExitCode::FAILURE,
    };
    runtime.block_on(async {
        tokio::select! {
            r = ddlgate::backfill::run(&opts) => match r {
                Ok(summary) => {
                    println!("{}", summary.describe());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("ddlgate backfill: {e}");
                    ExitCode::from(e.exit_code())
                }
            },
            _ = tokio::signal::ctrl_c() => {
                eprintln!(
                    "ddlgate backfill: interrupted; the batch in flight is rolled back, every \
                     committed one is recorded: rerun the same command to resume"
                );
                ExitCode::from(130)
            }
        }
    })
}

/// `ddlgate reload`: POST /reload to the admin endpoint of the configured instance.
fn run_reload(global: &ServeArgs) -> ExitCode {
    use std::io::{Read, Write};
    let config = match Config::load(global.config.as_deref(), &Overrides::default()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ddlgate: {e}");
            return ExitCode::from(2);
        }
    };
    let addr = config.admin.listen;
    let mut stream =
        match std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(5)) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("ddlgate: admin endpoint {addr} unreachable: {e}");
                return ExitCode::from(2);
            }
        };
    let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(30)));
    let auth = if config.admin.token.0.is_empty() {
        String::new()
    } else {
        format!("Authorization: Bearer {}\r\n", config.admin.token.0)
    };
    let request = format!(
        "POST /reload HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n"
    );
    let mut response = String::new();
    if let Err(e) = stream
        .write_all(request.as_bytes())
        .and_then(|()| stream.read_to_string(&mut response))
    {
        eprintln!("ddlgate: admin endpoint {addr}: {e}");
        return ExitCode::from(2);
    }
    let ok = response.starts_with("HTTP/1.1 200");
    let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    println!("{}", body.trim());
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// A current-thread Tokio runtime for a command; when it cannot be built, says so.
fn current_thread_runtime() -> Result<tokio::runtime::Runtime, ()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| eprintln!("ddlgate: cannot start the runtime: {e}"))
}

/// The configuration (file, environment) and the named policy profile, for the offline commands;
/// exit status 2 with the reason when either cannot be had.
fn config_and_profile(
    global: &ServeArgs,
    name: &str,
) -> Result<(Config, ddlgate::policy::Profile), ExitCode> {
    let config = Config::load(global.config.as_deref(), &Overrides::default()).map_err(|e| {
        eprintln!("ddlgate: {e}");
        ExitCode::from(2)
    })?;
    let policy = ddlgate::policy::Policy::from_config(&config);
    let profile = policy.profile_named(name).cloned().ok_or_else(|| {
        eprintln!("ddlgate: no profile named `{name}` in the configuration");
        ExitCode::from(2)
    })?;
    Ok((config, profile))
}

fn run_check(global: &ServeArgs, args: CheckArgs) -> ExitCode {
    use std::io::Read;
    let (_, profile) = match config_and_profile(global, &args.profile) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    let profile = &profile;
    let styled;
    let profile = if args.style {
        styled = profile.clone().with_style();
        &styled
    } else {
        profile
    };
    if let Err(code) = tool_and_assumption(args.tool, args.assume_in_transaction) {
        return code;
    }
    let opts = ddlgate::check::Options {
        pg_version: args.pg_version,
        assume_in_transaction: args.assume_in_transaction,
    };
    let mut reports = Vec::new();
    for path in &args.files {
        let (name, source) = if path.as_os_str() == "-" {
            let mut buf = Vec::new();
            if let Err(e) = std::io::stdin().read_to_end(&mut buf) {
                eprintln!("ddlgate: reading standard input: {e}");
                return ExitCode::from(2);
            }
            ("<stdin>".to_owned(), buf)
        } else {
            match std::fs::read(path) {
                Ok(b) => (path.display().to_string(), b),
                Err(e) => {
                    eprintln!("ddlgate: {}: {e}", path.display());
                    return ExitCode::from(2);
                }
            }
        };
        let file = (path.as_os_str() != "-").then_some(path.as_path());
        let units = match ddlgate::check::tool::plan(
            args.tool,
            file,
            &source,
            args.assume_in_transaction,
            opts.pg_version,
        ) {
            Ok((_, units)) => units,
            Err(e) => {
                eprintln!("ddlgate: {e}");
                return ExitCode::from(2);
            }
        };
        reports.extend(ddlgate::check::check_units(
            &name, &source, &units, &opts, profile,
        ));
    }
    if let Err(e) = ddlgate::check::render(&reports, args.format, &mut std::io::stdout().lock()) {
        eprintln!("ddlgate: {e}");
        return ExitCode::from(2);
    }
    if ddlgate::check::fails(&reports) {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// `--assume-in-transaction` with a `--tool` other than `auto` is refused: every file is that
/// tool's, so the flag would be silently ignored or silently win.
fn tool_and_assumption(tool: ddlgate::check::tool::Tool, assume: bool) -> Result<(), ExitCode> {
    if assume && tool != ddlgate::check::tool::Tool::Auto {
        eprintln!(
            "ddlgate: --assume-in-transaction is for files no tool claims; with --tool {} \
             the tool decides every file's transaction",
            tool.name()
        );
        return Err(ExitCode::from(2));
    }
    Ok(())
}

/// `ddlgate trace`: the library's `trace::run` on a one-thread runtime, then the report.
fn run_trace(global: &ServeArgs, args: TraceArgs) -> ExitCode {
    let (config, profile) = match config_and_profile(global, &args.profile) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    let profile = &profile;
    if let Err(code) = tool_and_assumption(args.tool, args.assume_in_transaction) {
        return code;
    }
    let inputs = match ddlgate::trace::read_inputs(&args.files) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("ddlgate: {e}");
            return ExitCode::from(2);
        }
    };
    let opts = ddlgate::trace::Options {
        database: args.database,
        allow_non_scratch: args.allow_non_scratch,
        tool: args.tool,
        assume_in_transaction: args.assume_in_transaction,
        lock_timeout: args.lock_timeout,
        connect_timeout: std::time::Duration::from_secs(10),
        ca_file: args.ca_file,
    };
    let runtime = match current_thread_runtime() {
        Ok(rt) => rt,
        Err(()) => return ExitCode::from(2),
    };
    let report = match runtime.block_on(ddlgate::trace::run(&inputs, &opts, profile, &config)) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ddlgate: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = ddlgate::trace::render(&report, args.format, &mut std::io::stdout().lock()) {
        eprintln!("ddlgate: {e}");
        return ExitCode::from(2);
    }
    if report.fails() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

fn init_tracing(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&config.log.level));
    // Colours only for a person at a terminal: never in `docker logs` or a log file.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    match config.log.format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

fn run_undo(args: UndoArgs) -> ExitCode {
    let opts = ddlgate::undo::cli::Options {
        database: args.database,
        last: args.last,
        id: args.id,
        dry_run: args.dry_run,
        schema: args.schema,
        ca_file: args.ca_file,
    };
    let runtime = match current_thread_runtime() {
        Ok(rt) => rt,
        Err(()) => return ExitCode::from(2),
    };
    match runtime.block_on(ddlgate::undo::cli::run(&opts)) {
        Ok(outcome) => {
            print!("{}", outcome.output);
            if outcome.ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("ddlgate undo: {e}");
            ExitCode::from(2)
        }
    }
}

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
    let cli = Cli::parse();
    let args = match cli.command {
        Some(Command::Serve(args)) => args,
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
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ddlgate: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(ddlgate::server::run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ddlgate: {e}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&config.log.level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match config.log.format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

//! ddlgate's own connections as a PostgreSQL client, for its command-line tools
//! (`ddlgate backfill`, `ddlgate trace`, `ddlgate undo`) and the lock monitor's messages: one
//! way to read a connection string, log in with TLS as libpq does, and say what went wrong.
//!
//! The connection string is libpq's (URL or `key=value`), read by tokio-postgres: TCP hosts or
//! a Unix socket directory, `connect_timeout`, `sslmode`. On top of that:
//!
//! - `PGPASSWORD` is read when the string has no password (tokio-postgres reads no `PG*`
//!   variable; the password is where libpq users keep it, out of the process list);
//! - TLS follows `sslmode`: `disable` is plain; `prefer` (the default) tries TLS and falls back
//!   to plain when the server declines; `require` insists on TLS. Without a CA file the server's
//!   certificate is not checked (libpq's `require`). With `--ca-file` the certificate must
//!   chain to one of its certificates and name the host (libpq's `verify-full`), and the
//!   connection never falls back to plain (`sslmode=disable` with a CA file is refused);
//! - the whole login (TCP, TLS and authentication) is bounded by the connection string's
//!   `connect_timeout`, or the tool's own default.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use tokio_postgres::config::SslMode;
use tokio_postgres::{Client, Config};

/// Why there is no connection.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The command line: a connection string that does not parse, a CA file that cannot be
    /// read, `sslmode=disable` with a CA file.
    #[error("{0}")]
    Usage(String),
    /// The server, the network or TLS refused or timed out.
    #[error("{0}")]
    Failed(String),
}

/// A connection string, read: `application_name` defaults to `application_name` (a string
/// that sets its own keeps it), and the password to `PGPASSWORD`.
pub fn config(url: &str, application_name: &str) -> Result<Config, ConnectError> {
    let mut config = Config::from_str(url)
        .map_err(|e| ConnectError::Usage(format!("--database: not a connection string: {e}")))?;
    if config.get_password().is_none()
        && let Some(password) = std::env::var_os("PGPASSWORD")
    {
        config.password(password.as_encoded_bytes());
    }
    if config.get_application_name().is_none() {
        config.application_name(application_name);
    }
    Ok(config)
}

/// Logs in (see the module documentation for TLS) and drives the connection on a task of its
/// own. `timeout` bounds the login unless the string sets `connect_timeout`.
pub async fn connect(
    mut config: Config,
    ca_file: Option<&Path>,
    timeout: Duration,
) -> Result<Client, ConnectError> {
    let timeout = config.get_connect_timeout().copied().unwrap_or(timeout);
    if ca_file.is_some() {
        if config.get_ssl_mode() == SslMode::Disable {
            return Err(ConnectError::Usage(
                "--ca-file asks for a verified TLS connection, --database for sslmode=disable"
                    .to_owned(),
            ));
        }
        // A certificate to check: never fall back to a plain connection.
        config.ssl_mode(SslMode::Require);
    }
    let login = async {
        if config.get_ssl_mode() == SslMode::Disable {
            let (client, conn) = config.connect(tokio_postgres::NoTls).await?;
            tokio::spawn(drive(conn));
            Ok(client)
        } else {
            let tls = crate::tls::tool_client_config(ca_file)
                .map_err(|e| ConnectError::Usage(e.to_string()))?;
            let (client, conn) = config
                .connect(tokio_postgres_rustls::MakeRustlsConnect::new(tls))
                .await?;
            tokio::spawn(drive(conn));
            Ok(client)
        }
    };
    tokio::time::timeout(timeout, login).await.map_err(|_| {
        ConnectError::Failed(format!(
            "timed out after {} ms (connect_timeout)",
            timeout.as_millis()
        ))
    })?
}

impl From<tokio_postgres::Error> for ConnectError {
    fn from(e: tokio_postgres::Error) -> ConnectError {
        let mut msg = describe(&e);
        // TLS and socket failures say what happened only in their source.
        if e.as_db_error().is_none()
            && let Some(source) = std::error::Error::source(&e)
        {
            msg.push_str(&format!(" ({source})"));
        }
        ConnectError::Failed(msg)
    }
}

async fn drive<S, T>(conn: tokio_postgres::Connection<S, T>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    if let Err(e) = conn.await {
        tracing::debug!(error = %e, "connection ended");
    }
}

/// A tokio-postgres error with the server's message, SQLSTATE, detail and hint when there are
/// some (its `Display` alone says only "db error").
pub fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut s = format!(
                "{}: {} (SQLSTATE {})",
                db.severity(),
                db.message(),
                db.code().code()
            );
            if let Some(d) = db.detail() {
                s.push_str("\nDETAIL: ");
                s.push_str(d);
            }
            if let Some(h) = db.hint() {
                s.push_str("\nHINT: ");
                s.push_str(h);
            }
            s
        }
        None => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_string_keeps_its_own_application_name_and_gets_the_tools_otherwise() {
        let c = config("postgres://u@h/db", "ddlgate_x").expect("parses");
        assert_eq!(c.get_application_name(), Some("ddlgate_x"));
        let c = config("postgres://u@h/db?application_name=mine", "ddlgate_x").expect("parses");
        assert_eq!(c.get_application_name(), Some("mine"));
        let c = config("host=h user=u application_name=kv", "ddlgate_x").expect("parses");
        assert_eq!(c.get_application_name(), Some("kv"));
    }

    #[test]
    fn a_string_that_does_not_parse_is_a_usage_error() {
        let e = config("postgres://u@h:notaport/db", "x").expect_err("bad port");
        assert!(matches!(e, ConnectError::Usage(_)), "{e:?}");
        assert!(e.to_string().starts_with("--database"), "{e}");
    }

    #[tokio::test]
    async fn a_ca_file_with_sslmode_disable_is_refused_before_connecting() {
        let c = config("postgres://u@127.0.0.1:1/db?sslmode=disable", "x").expect("parses");
        let e = connect(
            c,
            Some(Path::new("/nonexistent/ca.pem")),
            Duration::from_secs(1),
        )
        .await
        .expect_err("refused");
        assert!(matches!(e, ConnectError::Usage(_)), "{e:?}");
        assert!(e.to_string().contains("sslmode=disable"), "{e}");
    }
}

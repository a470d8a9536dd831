//! Transparency: a varied psql script (DDL, DML, errors, notices, COPY, transactions) gives
//! byte-identical output run directly against PostgreSQL and through ddlgate in observe mode
//! (the script's plain CREATE INDEX would otherwise be rewritten, with a notice).

mod common;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_script_output_is_byte_identical_through_ddlgate() {
    // Observe mode: ddlgate analyses and decides, but nothing may be visible to the client.
    let env = Env::start_with(|c| c.policy.mode = ddlgate::config::Mode::Observe).await;
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sql/transparency.sql");
    let script = script.to_str().expect("utf-8 path").to_owned();
    let args = ["-a", "-v", "ON_ERROR_STOP=0", "-f", script.as_str()];
    let direct = env.psql(env.pg.port(), "trust_user", &args, None).await;
    let proxied = env
        .psql(env.proxy_addr().port(), "trust_user", &args, None)
        .await;
    let (ds, ps) = (
        String::from_utf8_lossy(&direct.stdout),
        String::from_utf8_lossy(&proxied.stdout),
    );
    let (de, pe) = (
        String::from_utf8_lossy(&direct.stderr),
        String::from_utf8_lossy(&proxied.stderr),
    );
    // The script really exercised errors and notices, not just happy paths.
    assert!(
        de.contains("division by zero") && de.contains("notice from plpgsql"),
        "{de}"
    );
    assert!(ds.contains("copied, two") && ds.contains("done"), "{ds}");
    assert_eq!(ps, ds, "stdout differs through ddlgate");
    assert_eq!(pe, de, "stderr differs through ddlgate");
    assert_eq!(proxied.status.code(), direct.status.code());
}

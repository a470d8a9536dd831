//! node-postgres (`pg`, pinned by `scripts/e2e-tools.sh node`) sending DDL through the
//! extended protocol, as an application's own migration code does: a named query
//! (`Parse / Bind / Describe / Execute / Sync`) and `queryMode: 'extended'`. ddlgate runs the statements that need several steps
//! as those steps, retries one held up by a lock, and the schema ends as the same script
//! leaves it straight on PostgreSQL, while the application keeps writing.

use crate::common;
use crate::harness::{self, E2e, Tool, Via, Writer};

const SCRIPT: &str = r#"
const { Client } = require('pg');
(async () => {
  const c = new Client({ connectionString: process.env.DATABASE_URL });
  c.on('notice', (n) => console.log('NOTICE: ' + n.message));
  await c.connect();
  const run = async (q) => { const r = await c.query(q); console.log('OK ' + r.command); };
  const fk = 'ALTER TABLE orders ADD CONSTRAINT orders_account_id_fkey FOREIGN KEY (account_id) REFERENCES accounts (id)';
  await run({ name: 'fk', text: fk });
  await run({ text: 'ALTER TABLE accounts ADD CONSTRAINT accounts_email_key UNIQUE (email)', queryMode: 'extended' });
  await run({ name: 'nn', text: 'ALTER TABLE orders ALTER COLUMN total SET NOT NULL' });
  // The last statement waits for the test's signal (a file), so it meets the long
  // transaction the test opens.
  while (!require('fs').existsSync(process.env.GO_FILE)) {
    await new Promise((r) => setTimeout(r, 20));
  }
  await run({ name: 'col', text: 'ALTER TABLE orders ADD COLUMN status text' });
  await c.end();
})().catch((e) => { console.log('ERROR ' + e.code + ' ' + e.message); process.exit(1); });
"#;

const SETUP: &str = "CREATE TABLE accounts (id bigserial PRIMARY KEY, email text);
     CREATE TABLE orders (id bigserial PRIMARY KEY, account_id bigint, total numeric, note text, legacy_code text);";

#[tokio::test]
async fn node_postgres_extended_protocol_ddl_runs_as_safe_steps() {
    let e2e = E2e::start().await;
    let node_bin = harness::tool_dir("node");
    let modules = node_bin.parent().expect("node_modules").to_path_buf();
    let dir = tempfile::tempdir().expect("tempdir");
    let script = dir.path().join("migrate.js");
    std::fs::write(&script, SCRIPT).expect("script");
    for db in ["direct", "proxied"] {
        e2e.create_db(db).await;
        e2e.client(Via::Direct, db)
            .await
            .batch_execute(SETUP)
            .await
            .expect("setup");
        e2e.fill_accounts_and_orders(db).await;
    }
    let node = |via: Via, db: &str| {
        Tool::new("node")
            .arg(&script)
            .env("NODE_PATH", &modules)
            .env("DATABASE_URL", e2e.url(via, db))
    };
    let go = dir.path().join("go");
    let go_direct = dir.path().join("go-direct");
    std::fs::write(&go_direct, "").expect("signal");
    node(Via::Direct, "direct")
        .env("GO_FILE", &go_direct)
        .ok()
        .await;

    // Through ddlgate, with the application writing, and a long transaction in the way of
    // the last statement until ddlgate has retried it.
    let writer = Writer::start(&e2e, "proxied", crate::node_tools::WRITE).await;
    let blocker = e2e.client(Via::Direct, "proxied").await;
    let retries = || {
        e2e.env
            .proxy
            .shared()
            .metrics
            .value("ddlgate_lock_retries_total", &[])
    };
    let before = retries();
    let run = tokio::spawn(node(Via::Proxy, "proxied").env("GO_FILE", &go).run());
    // Once SET NOT NULL's steps made the column NOT NULL, a long transaction holds the table
    // and the script is told to go on.
    assert!(
        common::eventually(std::time::Duration::from_secs(60), || async {
            e2e.query_text(
                "proxied",
                "SELECT attnotnull FROM pg_attribute WHERE attrelid = 'orders'::regclass AND attname = 'total'",
            )
            .await
            .first()
            .is_some_and(|v| v == "t")
        })
        .await
    );
    blocker
        .batch_execute("BEGIN; SELECT count(*) FROM orders")
        .await
        .expect("blocker");
    std::fs::write(&go, "").expect("signal");
    let retried = common::eventually(std::time::Duration::from_secs(30), || async {
        retries() >= before + 2.0
    })
    .await;
    blocker.batch_execute("COMMIT").await.expect("commit");
    let out = run.await.expect("node task");
    let text = out.text();
    assert!(out.success(), "{text}");
    assert!(retried, "the held-up statement was retried: {text}");
    assert_eq!(text.matches("OK ALTER").count(), 4, "{text}");
    out.assert_says(&["NOT VALID", "lock not available"]);
    writer.stop_and_check().await;
    e2e.assert_same_schema("direct", "proxied", &[]).await;
}

//! End to end with real migration tools (issue 10): each tool, installed pinned by
//! `scripts/e2e-tools.sh`, runs a realistic history through ddlgate in its default
//! configuration, on fresh tables and on tables above the small-table thresholds, with a
//! concurrent writer; the schema is compared with the same history applied directly.

#[path = "../common/mod.rs"]
mod common;
mod harness;

mod alembic;
mod diesel;
mod django;
mod psql;
mod sqlx;

mod dbmate;
mod knex;
mod node_pg_driver;
mod node_pg_migrate;
mod node_tools;

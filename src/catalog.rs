//! Catalog facts about the objects a DDL statement touches, read from the live database.
//!
//! The rules are pure functions of a statement and its [`crate::rules::Context`]; the facts
//! here enter through `Context::catalog`. `None` means "not known" (offline `ddlgate check`, or
//! no catalog read for this statement): rules then assume the worst case, as a static linter
//! must.

/// What the catalog says about the objects one statement touches.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Facts {}

//! Decoding the server's answer into [`Facts`]: the JSON document of `facts_query`
//! ([`parse_facts`]) and the CHECK definitions in it ([`check_proves_not_null`]).

use serde::Deserialize;

use super::types::{
    BodyFacts, CatalogError, ColumnFacts, ColumnIndex, ColumnType, ConstraintFacts, DropFacts,
    Facts, FunctionFacts, IndexColumn, IndexFacts, Partition, PartitionOf, RelKind, Relation,
    Thresholds, TypeFacts, Volatility,
};
use crate::sql::lexer::{LexOptions, Lexer, Token, TokenKind, matching_paren};
use crate::sql::statement::Name;

#[derive(Deserialize)]
struct RawType {
    asked: String,
    oid: Option<i64>,
    #[serde(default)]
    citext: bool,
}

#[derive(Deserialize)]
struct RawDrop {
    asked_schema: Option<String>,
    asked_name: String,
    candidates: i64,
    anywhere: bool,
    dependents: i64,
    escapes: i64,
    #[serde(default)]
    names: Option<Vec<Option<String>>>,
}

#[derive(Deserialize)]
struct RawFacts {
    #[serde(default)]
    drops: Option<Vec<RawDrop>>,
    #[serde(default)]
    types: Option<Vec<RawType>>,
    timezone: Option<String>,
    relation: Option<RawRelation>,
    #[serde(default)]
    columns: Option<Vec<RawColumn>>,
    #[serde(default)]
    functions: Option<Vec<RawFunction>>,
    #[serde(default)]
    referenced: Option<Vec<RawRelation>>,
    #[serde(default)]
    index: Option<RawNamedIndex>,
    #[serde(default)]
    constraint: Option<RawConstraint>,
    /// A `DO` block's document (`query::do_facts_query`): whether its conditions read only
    /// the system catalogs, and its statements' facts.
    #[serde(default)]
    plain: Option<bool>,
    #[serde(default)]
    body: Option<Vec<RawBody>>,
}

#[derive(Deserialize)]
struct RawBody {
    start: usize,
    end: usize,
    facts: Option<RawFacts>,
}

#[derive(Deserialize)]
struct RawNamedIndex {
    asked: String,
    exists: bool,
    on_table: bool,
    valid: bool,
    #[serde(default)]
    columns: Option<Vec<RawIndexColumn>>,
}

#[derive(Deserialize)]
struct RawIndexColumn {
    name: Option<String>,
    not_null: bool,
}

#[derive(Deserialize)]
struct RawConstraint {
    asked: String,
    exists: bool,
    validated: bool,
    contype: Option<String>,
    own: bool,
    held_lock: Option<String>,
}

#[derive(Deserialize)]
struct RawRelation {
    asked_schema: Option<String>,
    asked_name: String,
    exists: bool,
    schema: Option<String>,
    name: Option<String>,
    relkind: Option<String>,
    #[serde(default)]
    table_schema: Option<String>,
    #[serde(default)]
    table_name: Option<String>,
    #[serde(default)]
    rows: Option<i64>,
    #[serde(default)]
    max_rows: Option<i64>,
    #[serde(default)]
    bytes: Option<i64>,
    #[serde(default)]
    populated: Option<bool>,
    #[serde(default)]
    refresh_index: Option<String>,
    #[serde(default)]
    partitions: Option<Vec<RawPartition>>,
    #[serde(default)]
    partition_of: Option<RawPartitionOf>,
}

#[derive(Deserialize)]
struct RawPartitionOf {
    schema: String,
    name: String,
    has_default: bool,
    /// Read from the row as JSON: NULL before PostgreSQL 14, which has no such column.
    #[serde(default)]
    detach_pending: Option<bool>,
}

#[derive(Deserialize)]
struct RawPartition {
    schema: String,
    name: String,
    parent_schema: String,
    parent_name: String,
    relkind: String,
    level: i64,
}

#[derive(Deserialize)]
struct RawColumn {
    name: String,
    exists: bool,
    #[serde(rename = "type")]
    data_type: Option<String>,
    type_oid: Option<i64>,
    typmod: Option<i64>,
    not_null: Option<bool>,
    #[serde(default)]
    nullable: Option<bool>,
    #[serde(default)]
    has_default: Option<bool>,
    collation: Option<String>,
    #[serde(default)]
    citext: Option<bool>,
    #[serde(default)]
    checks: Option<Vec<RawCheck>>,
    #[serde(default)]
    indexes: Option<Vec<RawIndex>>,
}

#[derive(Deserialize)]
struct RawCheck {
    name: String,
    definition: String,
}

#[derive(Deserialize)]
struct RawIndex {
    name: String,
    plain: bool,
}

#[derive(Deserialize)]
struct RawFunction {
    name: String,
    #[serde(default)]
    volatility: Option<Vec<String>>,
}

/// Reads the document [`facts_query`](super::facts_query) returned. Thresholds are left at their defaults.
pub fn parse_facts(json: &str) -> Result<Facts, CatalogError> {
    let raw: RawFacts = serde_json::from_str(json)?;
    let mut facts = from_raw(raw, true)?;
    facts.thresholds = Thresholds::default();
    Ok(facts)
}

/// `raw` as [`Facts`]; a `DO` block's statements only at the top (`outer`): no statement of a
/// body is itself given body facts.
fn from_raw(raw: RawFacts, outer: bool) -> Result<Facts, CatalogError> {
    // A body's facts count only when the read proved its conditions harmless (`plain`).
    let mut body = Vec::new();
    if outer && raw.plain == Some(true) {
        for b in raw.body.into_iter().flatten() {
            if let Some(f) = b.facts {
                body.push(BodyFacts {
                    start: b.start,
                    end: b.end,
                    facts: from_raw(f, false)?,
                });
            }
        }
    }
    let mut columns = Vec::new();
    for c in raw.columns.unwrap_or_default() {
        columns.push(column(c)?);
    }
    let mut referenced = Vec::new();
    for r in raw.referenced.unwrap_or_default() {
        referenced.push(relation(r)?);
    }
    let index = raw.index.map(|i| IndexFacts {
        asked: i.asked,
        exists: i.exists,
        on_table: i.on_table,
        valid: i.valid,
        key_columns: i
            .columns
            .unwrap_or_default()
            .into_iter()
            .map(|c| IndexColumn {
                name: c.name,
                not_null: c.not_null,
            })
            .collect(),
    });
    let constraint = raw.constraint.map(|c| ConstraintFacts {
        asked: c.asked,
        exists: c.exists,
        validated: c.validated,
        contype: c.contype.and_then(|t| t.chars().next()),
        own_transaction: c.own,
        held_lock: c.held_lock,
    });
    Ok(Facts {
        index,
        constraint,
        relation: raw.relation.map(relation).transpose()?,
        columns,
        functions: raw
            .functions
            .unwrap_or_default()
            .into_iter()
            .map(|f| FunctionFacts {
                volatility: volatilities(f.volatility.unwrap_or_default()),
                name: f.name,
            })
            .collect(),
        referenced,
        types: raw
            .types
            .unwrap_or_default()
            .into_iter()
            .map(|t| {
                Ok(TypeFacts {
                    asked: t.asked,
                    oid: t
                        .oid
                        .map(u32::try_from)
                        .transpose()
                        .map_err(|_| CatalogError::Invalid("type oid"))?,
                    citext: t.citext,
                })
            })
            .collect::<Result<_, CatalogError>>()?,
        timezone: raw.timezone,
        drops: raw
            .drops
            .unwrap_or_default()
            .into_iter()
            .map(|d| {
                let count = |v: i64| u64::try_from(v).map_err(|_| CatalogError::Invalid("count"));
                Ok(DropFacts {
                    asked: Name {
                        schema: d.asked_schema,
                        name: d.asked_name,
                    },
                    candidates: count(d.candidates)?,
                    anywhere: d.anywhere,
                    dependents: count(d.dependents)?,
                    escapes: count(d.escapes)?,
                    names: d.names.unwrap_or_default().into_iter().flatten().collect(),
                })
            })
            .collect::<Result<_, CatalogError>>()?,
        thresholds: Thresholds::default(),
        body,
    })
}

fn one_char(s: &str) -> Option<char> {
    let mut chars = s.chars();
    let c = chars.next()?;
    chars.next().is_none().then_some(c)
}

fn relkind(s: &str) -> Result<RelKind, CatalogError> {
    one_char(s)
        .map(RelKind::from_char)
        .ok_or(CatalogError::Invalid("relkind"))
}

fn relation(r: RawRelation) -> Result<Relation, CatalogError> {
    let qualified =
        |schema: Option<String>, name: Option<String>| name.map(|n| Name { schema, name: n });
    let mut partitions = Vec::new();
    for p in r.partitions.unwrap_or_default() {
        partitions.push(Partition {
            name: Name {
                schema: Some(p.schema),
                name: p.name,
            },
            parent: Name {
                schema: Some(p.parent_schema),
                name: p.parent_name,
            },
            kind: relkind(&p.relkind)?,
            level: u32::try_from(p.level).map_err(|_| CatalogError::Invalid("partition level"))?,
        });
    }
    Ok(Relation {
        asked: Name {
            schema: r.asked_schema,
            name: r.asked_name,
        },
        exists: r.exists,
        name: qualified(r.schema, r.name),
        kind: r.relkind.as_deref().map(relkind).transpose()?,
        table: qualified(r.table_schema, r.table_name),
        // Negative values cannot come from the query; treat them as unknown, not as an error.
        rows: r.rows.and_then(|v| u64::try_from(v).ok()),
        max_rows: r.max_rows.and_then(|v| u64::try_from(v).ok()),
        bytes: r.bytes.and_then(|v| u64::try_from(v).ok()),
        partitions,
        partition_of: r.partition_of.map(|p| PartitionOf {
            parent: Name {
                schema: Some(p.schema),
                name: p.name,
            },
            parent_has_default: p.has_default,
            detach_pending: p.detach_pending.unwrap_or(false),
        }),
        populated: r.populated,
        refresh_index: r.refresh_index,
    })
}

fn column(c: RawColumn) -> Result<ColumnFacts, CatalogError> {
    let data_type = match (c.data_type, c.type_oid, c.typmod) {
        (Some(formatted), Some(oid), Some(typmod)) => Some(ColumnType {
            formatted,
            oid: u32::try_from(oid).map_err(|_| CatalogError::Invalid("type oid"))?,
            typmod: i32::try_from(typmod).map_err(|_| CatalogError::Invalid("typmod"))?,
        }),
        _ => None,
    };
    let checks = c.checks.unwrap_or_default();
    Ok(ColumnFacts {
        valid_not_null_check: checks
            .iter()
            .any(|k| check_proves_not_null(&k.definition, &c.name)),
        checks: checks.into_iter().map(|k| k.name).collect(),
        indexes: c
            .indexes
            .unwrap_or_default()
            .into_iter()
            .map(|i| ColumnIndex {
                name: i.name,
                plain: i.plain,
            })
            .collect(),
        exists: c.exists && data_type.is_some(),
        not_null: c.not_null.unwrap_or(false),
        nullable: c.nullable.unwrap_or(false),
        has_default: c.has_default.unwrap_or(false),
        collation: c.collation,
        type_is_citext: c.citext,
        data_type,
        name: c.name,
    })
}

fn volatilities(v: Vec<String>) -> Vec<Volatility> {
    let mut out = Vec::new();
    for s in v {
        let vol = match s.as_str() {
            "i" => Volatility::Immutable,
            "s" => Volatility::Stable,
            // 'v', and anything a future server might add: assume volatile when unsure.
            _ => Volatility::Volatile,
        };
        if !out.contains(&vol) {
            out.push(vol);
        }
    }
    out
}

/// Whether a CHECK constraint, as `pg_get_constraintdef` prints it, proves `column` is never
/// NULL — the test PostgreSQL 12+ makes before skipping the `SET NOT NULL` scan: the whole
/// expression is `column IS NOT NULL`, or an AND with such a conjunct (a CHECK passes when its
/// expression is NULL, so `CHECK (c > 0)` proves nothing). Works on tokens, so string
/// literals and parentheses inside other conjuncts cannot confuse it.
pub fn check_proves_not_null(definition: &str, column: &str) -> bool {
    let sql = definition.as_bytes();
    let tokens: Vec<Token> = Lexer::new(sql, LexOptions::default())
        .filter(|t| !t.is_comment())
        .collect();
    let Some((first, rest)) = tokens.split_first() else {
        return false;
    };
    if !first.is_word(sql, "CHECK") {
        return false;
    }
    // `CHECK ( expr )` optionally followed by `NO INHERIT` / `NOT VALID`.
    let Some(close) = matching_paren(rest, 0) else {
        return false;
    };
    conjunct_proves(sql, &rest[1..close], column, 0)
}

/// AND groups nested deeper than this prove nothing (the conservative answer): the definition
/// comes from the server, but whoever created the constraint chose its nesting, and the reader
/// recurses once per level.
const MAX_CONJUNCT_DEPTH: usize = 32;

fn conjunct_proves(sql: &[u8], mut expr: &[Token], column: &str, nesting: usize) -> bool {
    if nesting > MAX_CONJUNCT_DEPTH {
        return false;
    }
    // Strip parentheses around the whole expression.
    while matching_paren(expr, 0).is_some_and(|c| c + 1 == expr.len()) {
        expr = &expr[1..expr.len() - 1];
    }
    // Split at top-level AND.
    let mut parts = Vec::new();
    let (mut depth, mut from) = (0usize, 0usize);
    for (i, t) in expr.iter().enumerate() {
        match t.kind {
            TokenKind::LParen => depth += 1,
            TokenKind::RParen => depth = depth.saturating_sub(1),
            _ if depth == 0 && t.is_word(sql, "AND") => {
                parts.push(&expr[from..i]);
                from = i + 1;
            }
            _ => {}
        }
    }
    if from > 0 {
        parts.push(&expr[from..]);
        return parts
            .iter()
            .any(|p| conjunct_proves(sql, p, column, nesting + 1));
    }
    match expr {
        [ident, is, not, null] => {
            is.is_word(sql, "IS")
                && not.is_word(sql, "NOT")
                && null.is_word(sql, "NULL")
                && identifier_is(sql, ident, column)
        }
        _ => false,
    }
}

/// `token` names `column`: a bare word folded to lower case, or a `"quoted"` identifier.
fn identifier_is(sql: &[u8], token: &Token, column: &str) -> bool {
    let text = String::from_utf8_lossy(token.text(sql));
    match token.kind {
        TokenKind::Word => text.to_ascii_lowercase() == column,
        TokenKind::QuotedIdent => text
            .strip_prefix('"')
            .and_then(|t| t.strip_suffix('"'))
            .is_some_and(|inner| inner.replace("\"\"", "\"") == column),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A DO block's document: its statements' facts only when the read proved the block's
    /// conditions harmless, and never nested further.
    #[test]
    fn do_documents_carry_body_facts_only_when_plain() {
        let doc = |plain: bool| {
            format!(
                r#"{{"plain": {plain}, "body": [{{"start": 6, "end": 29, "facts": {{"timezone": "UTC", "relation": null,
                   "plain": true, "body": [{{"start": 0, "end": 1, "facts": {{"timezone": "UTC", "relation": null}}}}]}}}}]}}"#
            )
        };
        let mut f = parse_facts(&doc(true)).expect("facts");
        assert_eq!(f.body.len(), 1);
        assert_eq!((f.body[0].start, f.body[0].end), (6, 29));
        assert!(f.body[0].facts.body.is_empty(), "one level only");
        assert!(parse_facts(&doc(false)).expect("facts").body.is_empty());
        let t = Thresholds {
            small_table_rows: 5,
            small_table_bytes: 6,
        };
        f.set_thresholds(t);
        assert_eq!(f.body[0].facts.thresholds, t);
    }

    #[test]
    fn not_null_checks_are_recognised_on_tokens() {
        for (def, column, proves) in [
            ("CHECK ((email IS NOT NULL))", "email", true),
            ("CHECK ((email IS NOT NULL)) NO INHERIT", "email", true),
            (
                "CHECK (((email IS NOT NULL) AND (length((email)::text) > 0)))",
                "email",
                true,
            ),
            (
                "CHECK (((note = 'x) AND (y IS NOT NULL'::text) AND (y IS NOT NULL)))",
                "y",
                true,
            ),
            (
                "CHECK (((note = 'x) AND (y IS NOT NULL'::text) AND (z > 0)))",
                "y",
                false,
            ),
            ("CHECK (((email IS NOT NULL) OR (x > 0)))", "email", false),
            ("CHECK ((length((email)::text) > 0))", "email", false),
            ("CHECK ((NOT (email IS NULL)))", "email", false),
            ("CHECK ((other IS NOT NULL))", "email", false),
            ("CHECK ((\"Email\" IS NOT NULL))", "Email", true),
            ("CHECK ((\"Email\" IS NOT NULL))", "email", false),
            ("CHECK ((\"a\"\"b\" IS NOT NULL))", "a\"b", true),
            ("CHECK ((email IS NOT NULL)", "email", false),
            ("FOREIGN KEY (email) REFERENCES t(email)", "email", false),
            ("", "email", false),
        ] {
            assert_eq!(
                check_proves_not_null(def, column),
                proves,
                "{def} for {column}"
            );
        }
        // Hostile nesting of AND groups: bounded, and the answer is the conservative one.
        let deep = format!(
            "CHECK ({}(email IS NOT NULL){})",
            "(x AND ".repeat(100_000),
            ")".repeat(100_000)
        );
        let worker = std::thread::Builder::new().stack_size(2 << 20);
        let proves = worker
            .spawn(move || check_proves_not_null(&deep, "email"))
            .expect("spawn")
            .join()
            .expect("no overflow");
        assert!(!proves);
    }

    const DOCUMENT: &str = r#"{
        "timezone": "UTC",
        "relation": {"asked_schema": null, "asked_name": "events", "exists": true,
            "schema": "public", "name": "events", "relkind": "p",
            "table_schema": null, "table_name": null, "rows": 1200, "bytes": 65536,
            "populated": null, "refresh_index": null,
            "partitions": [
                {"schema": "public", "name": "events_2026", "parent_schema": "public",
                 "parent_name": "events", "relkind": "p", "level": 1},
                {"schema": "public", "name": "events_2026_01", "parent_schema": "public",
                 "parent_name": "events_2026", "relkind": "r", "level": 2}]},
        "columns": [
            {"name": "email", "exists": true, "type": "character varying(20)", "type_oid": 1043,
             "typmod": 24, "not_null": false, "collation": "C",
             "checks": [{"name": "email_nn", "definition": "CHECK ((email IS NOT NULL))"},
                        {"name": "email_len", "definition": "CHECK ((length((email)::text) > 3))"}],
             "indexes": [{"name": "events_email_idx", "plain": true}]},
            {"name": "gone", "exists": false, "type": null, "type_oid": null, "typmod": null,
             "not_null": null, "collation": null, "checks": [], "indexes": []}],
        "functions": [{"name": "now", "volatility": ["s"]},
                      {"name": "f", "volatility": ["s", "v"]},
                      {"name": "nope", "volatility": []}],
        "referenced": [{"asked_schema": "s", "asked_name": "Ref", "exists": false,
            "schema": null, "name": null, "relkind": null}]
    }"#;

    #[test]
    fn parses_the_document() {
        let facts = parse_facts(DOCUMENT).expect("parses");
        let events = Name::bare("events");
        let r = facts.relation_for(&events).expect("relation");
        assert!(r.exists && r.is_partitioned());
        assert_eq!(r.kind, Some(RelKind::PartitionedTable));
        assert_eq!(r.name, Some(Name::new(Some("public"), "events")));
        assert_eq!((r.rows, r.bytes), (Some(1200), Some(65536)));
        assert!(r.is_small(&Thresholds::default()));
        assert!(!r.is_small(&Thresholds {
            small_table_rows: 1000,
            ..Thresholds::default()
        }));
        assert_eq!(r.size_description(), "about 1200 rows, 64 kB");
        let leaves: Vec<_> = r.leaf_partitions().map(|p| p.name.to_string()).collect();
        assert_eq!(leaves, ["public.events_2026_01"]);
        assert_eq!(
            r.partitions[1].parent,
            Name::new(Some("public"), "events_2026")
        );
        assert_eq!(r.partitions[1].level, 2);
        // Facts are only handed out for the name they were read for.
        assert!(
            facts
                .relation_for(&Name::new(Some("public"), "events"))
                .is_none()
        );
        assert!(facts.column(&Name::bare("other"), "email").is_none());

        let email = facts.column(&events, "email").expect("column");
        assert!(email.exists && email.valid_not_null_check && !email.not_null);
        assert_eq!(email.checks, ["email_nn", "email_len"]);
        assert_eq!(email.collation.as_deref(), Some("C"));
        assert_eq!(
            email.data_type,
            Some(ColumnType {
                formatted: "character varying(20)".into(),
                oid: 1043,
                typmod: 24
            })
        );
        assert_eq!(email.indexes[0].name, "events_email_idx");
        let gone = facts.column(&events, "gone").expect("asked");
        assert!(!gone.exists && gone.data_type.is_none());

        assert_eq!(facts.volatility("now"), Some(&[Volatility::Stable][..]));
        assert_eq!(
            facts.volatility("f"),
            Some(&[Volatility::Stable, Volatility::Volatile][..])
        );
        assert_eq!(facts.volatility("nope"), None);
        assert_eq!(facts.volatility("never_asked"), None);
        let referenced = facts
            .referenced(&Name::new(Some("s"), "Ref"))
            .expect("referenced");
        assert!(!referenced.exists);
        assert_eq!(facts.timezone.as_deref(), Some("UTC"));
        assert_eq!(facts.thresholds, Thresholds::default());
    }

    #[test]
    fn bad_documents_are_errors_not_panics() {
        for bad in [
            "",
            "null",
            "[]",
            "{\"relation\": 3}",
            "{\"relation\": {\"asked_name\": \"t\", \"exists\": true, \"schema\": null, \"name\": null, \"relkind\": \"rr\", \"asked_schema\": null}}",
            "{\"columns\": [{\"name\": \"c\", \"exists\": true, \"type\": \"x\", \"type_oid\": -1, \"typmod\": 0, \"not_null\": true, \"collation\": null}]}",
            "{\"columns\": [{\"name\": \"c\", \"exists\": true, \"type\": \"x\", \"type_oid\": 1, \"typmod\": 99999999999, \"not_null\": true, \"collation\": null}]}",
        ] {
            assert!(parse_facts(bad).is_err(), "{bad}");
        }
        // Unknown relkinds and volatilities from a newer server are kept, cautiously.
        let f = parse_facts(
            r#"{"relation": {"asked_schema": null, "asked_name": "t", "exists": true, "schema": "public",
                "name": "t", "relkind": "Z", "rows": -5, "bytes": null},
                "functions": [{"name": "g", "volatility": ["x"]}]}"#,
        )
        .expect("parses");
        let r = f.relation.expect("relation");
        assert_eq!(r.kind, Some(RelKind::Other('Z')));
        assert_eq!(r.rows, None);
        assert_eq!(f.functions[0].volatility, [Volatility::Volatile]);
        assert_eq!(parse_facts("{}").expect("empty").relation, None);
    }

    #[test]
    fn parses_heap_bounds_and_referenced_sizes() {
        let facts = parse_facts(
            r#"{"timezone": "UTC", "relation": {"asked_schema": null, "asked_name": "e",
                "exists": true, "schema": "public", "name": "e", "relkind": "r",
                "rows": null, "max_rows": 0, "bytes": 8192},
              "referenced": [{"asked_schema": null, "asked_name": "p", "exists": true,
                "schema": "public", "name": "p", "relkind": "r",
                "rows": null, "max_rows": 582, "bytes": 16384}]}"#,
        )
        .expect("parses");
        let e = facts.relation.as_ref().expect("relation");
        assert_eq!((e.rows, e.max_rows, e.bytes), (None, Some(0), Some(8192)));
        assert!(e.is_small(&facts.thresholds));
        let p = facts.referenced(&Name::bare("p")).expect("referenced");
        assert_eq!((p.max_rows, p.bytes), (Some(582), Some(16384)));
        assert!(p.is_small(&facts.thresholds));
    }
}

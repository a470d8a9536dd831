//! What `ALTER COLUMN … TYPE` does to the data ([`type_change`]), decided from the column's
//! current type in the facts and the type written, the way PostgreSQL decides it.

use super::types::{ColumnFacts, ColumnType, Facts};
use crate::sql::lexer::{LexOptions, Lexer, Token, TokenKind};
use crate::sql::quote;

/// What `ALTER COLUMN … TYPE` does to the data, decided the way PostgreSQL decides it
/// (`ATColumnChangeRequiresRewrite` after the typmod support functions have simplified the
/// conversion).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TypeChange {
    /// Binary-coercible and the length coercion (if any) is a no-op: no rewrite, and plain
    /// indexes on the column are kept.
    Free,
    /// No table rewrite, but the index operator class changes (`text` ↔ `citext`,
    /// `timestamp` ↔ `timestamptz`, `text` → `bpchar`): every index on the column is rebuilt
    /// under the ACCESS EXCLUSIVE lock.
    RebuildsIndexes,
    /// The table and all its indexes are rewritten.
    Rewrites,
    /// ddlgate cannot tell (an unrecognised type, an array, a domain): assume a rewrite.
    Unknown,
}

/// Whether changing a column of type `from` to the type written `to` (the statement model's
/// lower-cased `data_type`) avoids a table rewrite: `Some(true)` no rewrite, `Some(false)` a
/// rewrite, `None` unknown (assume a rewrite). `timestamp` ↔ `timestamptz` depends on the
/// session time zone and is `None` here; see [`type_change`].
pub fn is_binary_coercible(from: &ColumnType, to: &str) -> Option<bool> {
    match type_change(from, to, None) {
        TypeChange::Free | TypeChange::RebuildsIndexes => Some(true),
        TypeChange::Rewrites => Some(false),
        TypeChange::Unknown => None,
    }
}

/// Whether the type written `to` has a collation (text-like types). A type change to one
/// without `COLLATE` gives the column the type's default collation. Unrecognised types count
/// as collatable, the cautious answer.
pub fn is_collatable(to: &str) -> bool {
    match parse_type(to) {
        Some(t) => matches!(t.ty, Ty::Citext | Ty::Oid(TEXT | VARCHAR | BPCHAR)),
        None => true,
    }
}

/// What changing a column of type `from` to the type written `to` does. `timezone` is the
/// session's `TimeZone`; pass it only on PostgreSQL 12+ (before 12 `timestamp` ↔
/// `timestamptz` always rewrote).
pub fn type_change(from: &ColumnType, to: &str, timezone: Option<&str>) -> TypeChange {
    let (Some(target), Some(source)) = (parse_type(to), source_type(from)) else {
        return TypeChange::Unknown;
    };
    // The typmod the length coercion sees: a relabelled value (binary cast to another type)
    // has none.
    let (source_typmod, rebuilds_indexes) = if source == target.ty {
        (from.typmod, false)
    } else if let Some(rebuilds) = binary_cast(source, target.ty) {
        (-1, rebuilds)
    } else if matches!(
        (source, target.ty),
        (Ty::Oid(TIMESTAMP), Ty::Oid(TIMESTAMPTZ)) | (Ty::Oid(TIMESTAMPTZ), Ty::Oid(TIMESTAMP))
    ) {
        // PostgreSQL 12+: a no-op when the session time zone is UTC
        // (TimestampTimestampTzRequiresRewrite). The opclass changes, so indexes are rebuilt.
        match timezone {
            None => return TypeChange::Unknown,
            Some(tz) if is_utc(tz) => (-1, true),
            Some(_) => return TypeChange::Rewrites,
        }
    } else {
        return TypeChange::Rewrites;
    };
    let no_op = target.typmod < 0
        || target.typmod == source_typmod
        || length_coercion_is_noop(target.ty, source_typmod, target.typmod);
    match (no_op, rebuilds_indexes) {
        (false, _) => TypeChange::Rewrites,
        (true, false) => TypeChange::Free,
        (true, true) => TypeChange::RebuildsIndexes,
    }
}

const BOOL: u32 = 16;
const BYTEA: u32 = 17;
const INT8: u32 = 20;
const INT2: u32 = 21;
const INT4: u32 = 23;
const TEXT: u32 = 25;
const JSON: u32 = 114;
const XML: u32 = 142;
const CIDR: u32 = 650;
const FLOAT4: u32 = 700;
const FLOAT8: u32 = 701;
const MACADDR8: u32 = 774;
const MONEY: u32 = 790;
const MACADDR: u32 = 829;
const INET: u32 = 869;
const BPCHAR: u32 = 1042;
const VARCHAR: u32 = 1043;
const DATE: u32 = 1082;
const TIME: u32 = 1083;
const TIMESTAMP: u32 = 1114;
const TIMESTAMPTZ: u32 = 1184;
const INTERVAL: u32 = 1186;
const TIMETZ: u32 = 1266;
const BIT: u32 = 1560;
const VARBIT: u32 = 1562;
const NUMERIC: u32 = 1700;
const UUID: u32 = 2950;
const JSONB: u32 = 3802;

/// Built-in types whose conversions ddlgate knows (fixed OIDs since PostgreSQL 7).
const KNOWN: &[u32] = &[
    BOOL,
    BYTEA,
    INT8,
    INT2,
    INT4,
    TEXT,
    JSON,
    XML,
    CIDR,
    FLOAT4,
    FLOAT8,
    MACADDR8,
    MONEY,
    MACADDR,
    INET,
    BPCHAR,
    VARCHAR,
    DATE,
    TIME,
    TIMESTAMP,
    TIMESTAMPTZ,
    INTERVAL,
    TIMETZ,
    BIT,
    VARBIT,
    NUMERIC,
    UUID,
    JSONB,
];

/// A type ddlgate can reason about: a known built-in, or the `citext` extension type (whose
/// OID differs per database).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ty {
    Oid(u32),
    Citext,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Target {
    pub(super) ty: Ty,
    typmod: i32,
}

fn source_type(from: &ColumnType) -> Option<Ty> {
    if KNOWN.contains(&from.oid) {
        return Some(Ty::Oid(from.oid));
    }
    let unqualified = from.formatted.rsplit('.').next().unwrap_or_default();
    (unqualified == "citext").then_some(Ty::Citext)
}

/// Binary-coercible casts between different known types (`pg_cast.castmethod = 'b'`, and
/// citext's `WITHOUT FUNCTION` casts), with whether the index operator class changes.
fn binary_cast(from: Ty, to: Ty) -> Option<bool> {
    use Ty::{Citext, Oid};
    match (from, to) {
        // varchar has no operator classes of its own (it uses text's); cidr uses inet's.
        (Oid(TEXT), Oid(VARCHAR))
        | (Oid(VARCHAR), Oid(TEXT))
        | (Oid(CIDR), Oid(INET))
        | (Oid(XML), Oid(TEXT))
        | (Oid(XML), Oid(VARCHAR)) => Some(false),
        (Oid(TEXT), Oid(BPCHAR))
        | (Oid(VARCHAR), Oid(BPCHAR))
        | (Oid(XML), Oid(BPCHAR))
        | (Oid(BIT), Oid(VARBIT))
        | (Oid(VARBIT), Oid(BIT))
        | (Oid(TEXT), Citext)
        | (Oid(VARCHAR), Citext)
        | (Citext, Oid(TEXT))
        | (Citext, Oid(VARCHAR))
        | (Citext, Oid(BPCHAR)) => Some(true),
        _ => None,
    }
}

/// Whether the length-coercion function's planner support simplifies `old → new` typmod to
/// a relabel (varchar_support, numeric_support, varbit_support, timestamp_support,
/// time_support, interval_support). Types without support (bpchar, bit) always coerce.
fn length_coercion_is_noop(ty: Ty, old: i32, new: i32) -> bool {
    const VARHDRSZ: i32 = 4;
    const MAX_TEMPORAL_PRECISION: i32 = 6;
    match ty {
        Ty::Oid(VARCHAR) => new < 0 || (old >= 0 && old <= new),
        Ty::Oid(VARBIT) => new <= 0 || (old > 0 && old <= new),
        Ty::Oid(NUMERIC) => {
            if new < VARHDRSZ {
                true
            } else if old < VARHDRSZ {
                false
            } else {
                numeric_scale(old) == numeric_scale(new)
                    && numeric_precision(new) >= numeric_precision(old)
            }
        }
        Ty::Oid(TIMESTAMP | TIMESTAMPTZ | TIME | TIMETZ) => {
            new < 0 || new == MAX_TEMPORAL_PRECISION || (old >= 0 && new >= old)
        }
        Ty::Oid(INTERVAL) => interval_noop(old, new),
        _ => false,
    }
}

fn numeric_precision(typmod: i32) -> i32 {
    ((typmod - 4) >> 16) & 0xffff
}

/// The scale, sign-extended from 11 bits (PostgreSQL 15 allows negative scales).
fn numeric_scale(typmod: i32) -> i32 {
    (((typmod - 4) & 0x7ff) ^ 1024) - 1024
}

const INTERVAL_FULL_RANGE: i32 = 0x7fff;
const INTERVAL_FULL_PRECISION: i32 = 0xffff;

/// interval_support: a no-op when the least field stays or decreases while the sub-second
/// precision stays or increases.
fn interval_noop(old: i32, new: i32) -> bool {
    if new < 0 {
        return true;
    }
    let (Some(old_least), Some(new_least)) = (interval_least_field(old), interval_least_field(new))
    else {
        return false;
    };
    let old_precision = if old < 0 {
        INTERVAL_FULL_PRECISION
    } else {
        old & 0xffff
    };
    let new_precision = new & 0xffff;
    new_least <= old_least
        && (old_least > 0 || new_precision >= 6 || new_precision >= old_precision)
}

/// intervaltypmodleastfield: 0 SECOND, 1 MINUTE, 2 HOUR, 3 DAY, 4 MONTH, 5 YEAR.
fn interval_least_field(typmod: i32) -> Option<u8> {
    if typmod < 0 {
        return Some(0);
    }
    const fn m(bit: u32) -> i32 {
        1 << bit
    }
    // datetime.h field numbers.
    const MONTH: i32 = m(1);
    const YEAR: i32 = m(2);
    const DAY: i32 = m(3);
    const HOUR: i32 = m(10);
    const MINUTE: i32 = m(11);
    const SECOND: i32 = m(12);
    let range = (typmod >> 16) & 0x7fff;
    Some(match range {
        YEAR => 5,
        MONTH => 4,
        DAY => 3,
        HOUR => 2,
        MINUTE => 1,
        SECOND => 0,
        r if r == YEAR | MONTH => 4,
        r if r == DAY | HOUR => 2,
        r if r == DAY | HOUR | MINUTE => 1,
        r if r == DAY | HOUR | MINUTE | SECOND => 0,
        r if r == HOUR | MINUTE => 1,
        r if r == HOUR | MINUTE | SECOND => 0,
        r if r == MINUTE | SECOND => 0,
        INTERVAL_FULL_RANGE => 0,
        _ => return None,
    })
}

/// Zone names with a fixed zero offset, for which `pg_get_timezone_offset` reports 0.
fn is_utc(tz: &str) -> bool {
    const UTC: &[&str] = &[
        "utc",
        "etc/utc",
        "uct",
        "etc/uct",
        "gmt",
        "etc/gmt",
        "gmt0",
        "etc/gmt0",
        "gmt+0",
        "etc/gmt+0",
        "gmt-0",
        "etc/gmt-0",
        "greenwich",
        "etc/greenwich",
        "universal",
        "etc/universal",
        "zulu",
        "etc/zulu",
    ];
    UTC.contains(&tz.to_ascii_lowercase().as_str())
}

/// A type name as written, split into its schema, its words (lower-cased, space-joined) and its
/// numeric modifiers; `None` for arrays, quoted names and anything not of that shape.
fn split_type(text: &str) -> Option<(Option<String>, String, Option<Vec<i64>>)> {
    if text.contains('[') || text.contains('"') {
        return None;
    }
    let sql = text.as_bytes();
    let tokens: Vec<Token> = Lexer::new(sql, LexOptions::default())
        .filter(|t| !t.is_comment())
        .collect();
    let mut schema: Option<String> = None;
    let mut words: Vec<String> = Vec::new();
    let mut args: Option<Vec<i64>> = None;
    let mut i = 0;
    while let Some(t) = tokens.get(i) {
        match t.kind {
            TokenKind::Word => {
                let word = String::from_utf8_lossy(t.text(sql)).to_ascii_lowercase();
                let dot = tokens
                    .get(i + 1)
                    .is_some_and(|d| d.kind == TokenKind::Operator && d.text(sql) == b".");
                if dot {
                    if schema.is_some() || !words.is_empty() {
                        return None;
                    }
                    schema = Some(word);
                    i += 2;
                    continue;
                }
                words.push(word);
                i += 1;
            }
            TokenKind::LParen if args.is_none() => {
                let (list, next) = type_args(sql, &tokens, i)?;
                args = Some(list);
                i = next;
            }
            _ => return None,
        }
    }
    Some((schema, words.join(" "), args))
}

/// The name under which the catalog facts resolve the type written `to` (`varchar(20)` →
/// `varchar`, `pg_catalog.text`, `timestamp(3) with time zone` → `timestamp with time zone`):
/// `None` when ddlgate does not know the type anyway (then it assumes a rewrite, facts or not).
pub fn type_lookup_name(to: &str) -> Option<String> {
    parse_type(to)?;
    let (schema, mut words, args) = split_type(to)?;
    // `float(p)` is real or double precision depending on p: the modifier picks the type.
    if words == "float"
        && let Some([p]) = args.as_deref()
    {
        words = format!("float({p})");
    }
    Some(match schema {
        Some(s) => format!("{s}.{words}"),
        None => words,
    })
}

/// The text handed to `to_regtype` for a [`type_lookup_name`]: the schema quoted, so that no
/// word can be a keyword the type grammar rejects.
pub(super) fn type_regtype_text(lookup: &str) -> String {
    match lookup.split_once('.') {
        Some((schema, words)) => format!("{}.{words}", quote::ident(schema)),
        None => lookup.to_owned(),
    }
}

/// Whether the column's current type is what ddlgate reads it as: a known built-in by OID, or
/// — for a type whose name says `citext` — the extension's own type as the catalog confirmed.
/// Any other type is unknown to ddlgate anyway.
pub fn column_type_is_as_named(col: &ColumnFacts) -> bool {
    match col.data_type.as_ref().and_then(source_type) {
        Some(Ty::Citext) => col.type_is_citext == Some(true),
        _ => true,
    }
}

/// Whether the server resolved the type written `to` to the very type ddlgate reads it as: the
/// built-in of that OID (a domain or type of the same name earlier in search_path is not), or
/// citext's own type. `false` without facts about it — the caller then assumes a rewrite.
pub fn type_resolves_as_written(facts: &Facts, to: &str) -> bool {
    let (Some(target), Some(asked)) = (parse_type(to), type_lookup_name(to)) else {
        return false;
    };
    let Some(resolved) = facts.types.iter().find(|t| t.asked == asked) else {
        return false;
    };
    match target.ty {
        Ty::Oid(oid) => resolved.oid == Some(oid),
        Ty::Citext => resolved.citext,
    }
}

/// Reads a type as the statement model writes it (`varchar(20)`, `character varying(20)`,
/// `numeric(10,2)`, `timestamp(3) with time zone`, `pg_catalog.text`, `public.citext`).
/// `None` for anything else: arrays, quoted names (`"char"` is not `char`), other schemas,
/// interval field restrictions, out-of-range modifiers.
pub(super) fn parse_type(text: &str) -> Option<Target> {
    let (schema, name, args) = split_type(text)?;
    if name == "citext" {
        return args.is_none().then_some(Target {
            ty: Ty::Citext,
            typmod: -1,
        });
    }
    if schema.as_deref().is_some_and(|s| s != "pg_catalog") {
        return None;
    }
    let args = args.unwrap_or_default();
    let one = |lo: i64, hi: i64| -> Option<Option<i32>> {
        match args.as_slice() {
            [] => Some(None),
            [n] if (lo..=hi).contains(n) => i32::try_from(*n).ok().map(Some),
            _ => None,
        }
    };
    let none = || args.is_empty();
    let fixed = |oid: u32| none().then_some((oid, -1));
    // Precision above 6 is accepted with a warning and reduced to 6.
    let precision = || one(0, i64::from(i32::MAX)).map(|p| p.map_or(-1, |p| p.min(6)));
    let (oid, typmod) = match name.as_str() {
        "varchar" | "character varying" | "char varying" => {
            (VARCHAR, one(1, 10_485_760)?.map_or(-1, |n| n + 4))
        }
        "char" | "character" => (BPCHAR, one(1, 10_485_760)?.map_or(5, |n| n + 4)),
        "bpchar" => (BPCHAR, one(1, 10_485_760)?.map_or(-1, |n| n + 4)),
        "numeric" | "decimal" | "dec" => match args.as_slice() {
            [] => (NUMERIC, -1),
            [p] if (1..=1000).contains(p) => (NUMERIC, numeric_typmod(*p, 0)?),
            [p, s] if (1..=1000).contains(p) && (-1000..=1000).contains(s) => {
                (NUMERIC, numeric_typmod(*p, *s)?)
            }
            _ => return None,
        },
        "timestamp" | "timestamp without time zone" => (TIMESTAMP, precision()?),
        "timestamptz" | "timestamp with time zone" => (TIMESTAMPTZ, precision()?),
        "time" | "time without time zone" => (TIME, precision()?),
        "timetz" | "time with time zone" => (TIMETZ, precision()?),
        "interval" => match precision()? {
            p if p < 0 => (INTERVAL, -1),
            p => (INTERVAL, (INTERVAL_FULL_RANGE << 16) | p),
        },
        "bit" => (BIT, one(1, i64::from(i32::MAX))?.unwrap_or(1)),
        "varbit" | "bit varying" => (VARBIT, one(1, i64::from(i32::MAX))?.unwrap_or(-1)),
        "float" => match one(1, 53)? {
            None => (FLOAT8, -1),
            Some(p) if p <= 24 => (FLOAT4, -1),
            Some(_) => (FLOAT8, -1),
        },
        "text" => fixed(TEXT)?,
        "smallint" | "int2" => fixed(INT2)?,
        "int" | "integer" | "int4" => fixed(INT4)?,
        "bigint" | "int8" => fixed(INT8)?,
        "real" | "float4" => fixed(FLOAT4)?,
        "double precision" | "float8" => fixed(FLOAT8)?,
        "bool" | "boolean" => fixed(BOOL)?,
        "bytea" => fixed(BYTEA)?,
        "date" => fixed(DATE)?,
        "uuid" => fixed(UUID)?,
        "json" => fixed(JSON)?,
        "jsonb" => fixed(JSONB)?,
        "xml" => fixed(XML)?,
        "inet" => fixed(INET)?,
        "cidr" => fixed(CIDR)?,
        "macaddr" => fixed(MACADDR)?,
        "macaddr8" => fixed(MACADDR8)?,
        "money" => fixed(MONEY)?,
        _ => return None,
    };
    Some(Target {
        ty: Ty::Oid(oid),
        typmod,
    })
}

/// `( n [, n] )` starting at the `(` at `open`: the numbers (a leading `-` allowed) and the
/// index after the `)`.
fn type_args(sql: &[u8], tokens: &[Token], open: usize) -> Option<(Vec<i64>, usize)> {
    let mut out = Vec::new();
    let mut i = open + 1;
    loop {
        let mut negative = false;
        let mut t = tokens.get(i)?;
        if t.kind == TokenKind::Operator && t.text(sql) == b"-" {
            negative = true;
            i += 1;
            t = tokens.get(i)?;
        }
        if t.kind != TokenKind::Number {
            return None;
        }
        let n: i64 = std::str::from_utf8(t.text(sql)).ok()?.parse().ok()?;
        out.push(if negative { -n } else { n });
        i += 1;
        match tokens.get(i)?.kind {
            TokenKind::Comma => i += 1,
            TokenKind::RParen => return Some((out, i + 1)),
            _ => return None,
        }
    }
}

fn numeric_typmod(precision: i64, scale: i64) -> Option<i32> {
    let p = i32::try_from(precision).ok()?;
    let s = i32::try_from(scale).ok()?;
    Some(((p << 16) | (s & 0x7ff)) + 4)
}

#[cfg(test)]
mod tests {
    use super::*;
    fn ty(formatted: &str, oid: u32, typmod: i32) -> ColumnType {
        ColumnType {
            formatted: formatted.to_owned(),
            oid,
            typmod,
        }
    }

    fn numeric(p: i32, s: i32) -> ColumnType {
        ty(&format!("numeric({p},{s})"), NUMERIC, ((p << 16) | s) + 4)
    }
    #[test]
    fn type_changes_follow_the_server() {
        use TypeChange::*;
        let varchar20 = ty("character varying(20)", VARCHAR, 24);
        let varchar = ty("character varying", VARCHAR, -1);
        let text = ty("text", TEXT, -1);
        let ts3 = ty("timestamp(3) without time zone", TIMESTAMP, 3);
        let tstz = ty("timestamp with time zone", TIMESTAMPTZ, -1);
        let citext = ty("citext", 16_450, -1);
        let cases: Vec<(ColumnType, &str, Option<&str>, TypeChange)> = vec![
            (varchar20.clone(), "varchar(50)", None, Free),
            (varchar20.clone(), "character varying(50)", None, Free),
            (varchar20.clone(), "char varying(20)", None, Free),
            (varchar20.clone(), "pg_catalog.varchar(30)", None, Free),
            (varchar20.clone(), "varchar", None, Free),
            (varchar20.clone(), "text", None, Free),
            (varchar20.clone(), "varchar(10)", None, Rewrites),
            (varchar20.clone(), "citext", None, RebuildsIndexes),
            (varchar20.clone(), "public.citext", None, RebuildsIndexes),
            (varchar20.clone(), "bpchar", None, RebuildsIndexes),
            (varchar20.clone(), "char(30)", None, Rewrites),
            (varchar20.clone(), "int", None, Rewrites),
            (varchar20.clone(), "varchar(20)[]", None, Unknown),
            (varchar20.clone(), "\"mytype\"", None, Unknown),
            (varchar20.clone(), "app.varchar(30)", None, Unknown),
            (varchar20.clone(), "varchar(0)", None, Unknown),
            (varchar.clone(), "varchar(10)", None, Rewrites),
            (varchar.clone(), "text", None, Free),
            (text.clone(), "varchar", None, Free),
            (text.clone(), "character varying", None, Free),
            (text.clone(), "varchar(100)", None, Rewrites),
            (text.clone(), "citext", None, RebuildsIndexes),
            (text.clone(), "text", None, Free),
            (numeric(10, 2), "numeric(12,2)", None, Free),
            (numeric(10, 2), "decimal(12, 2)", None, Free),
            (numeric(10, 2), "numeric", None, Free),
            (numeric(10, 2), "numeric(10,2)", None, Free),
            (numeric(10, 2), "numeric(12,3)", None, Rewrites),
            (numeric(10, 2), "numeric(8,2)", None, Rewrites),
            (numeric(10, 2), "numeric(12)", None, Rewrites),
            (ty("numeric", NUMERIC, -1), "numeric(10,2)", None, Rewrites),
            (ts3.clone(), "timestamp(6)", None, Free),
            (ts3.clone(), "timestamp", None, Free),
            (ts3.clone(), "timestamp(3) without time zone", None, Free),
            (ts3.clone(), "timestamp(9)", None, Free),
            (ts3.clone(), "timestamp(2)", None, Rewrites),
            (ts3.clone(), "timestamptz", None, Unknown),
            (ts3.clone(), "timestamptz", Some("UTC"), RebuildsIndexes),
            (
                ts3.clone(),
                "timestamp with time zone",
                Some("Etc/UTC"),
                RebuildsIndexes,
            ),
            (
                ts3.clone(),
                "timestamp(3) with time zone",
                Some("UTC"),
                Rewrites,
            ),
            (ts3.clone(), "timestamptz", Some("Europe/Berlin"), Rewrites),
            (tstz.clone(), "timestamp", Some("utc"), RebuildsIndexes),
            (
                ty("time(2) without time zone", TIME, 2),
                "time(4)",
                None,
                Free,
            ),
            (
                ty("time with time zone", TIMETZ, -1),
                "timetz(3)",
                None,
                Rewrites,
            ),
            (ty("cidr", CIDR, -1), "inet", None, Free),
            (ty("inet", INET, -1), "cidr", None, Rewrites),
            (ty("bit(3)", BIT, 3), "varbit", None, RebuildsIndexes),
            (ty("bit(3)", BIT, 3), "bit varying(5)", None, Rewrites),
            (ty("bit(3)", BIT, 3), "bit(3)", None, Free),
            (ty("bit(3)", BIT, 3), "bit(4)", None, Rewrites),
            (ty("bit varying(5)", VARBIT, 5), "varbit(10)", None, Free),
            (ty("bit varying(5)", VARBIT, 5), "varbit(4)", None, Rewrites),
            (ty("character(5)", BPCHAR, 9), "char(6)", None, Rewrites),
            (ty("character(5)", BPCHAR, 9), "character(5)", None, Free),
            (ty("character(5)", BPCHAR, 9), "char", None, Rewrites),
            (ty("character(5)", BPCHAR, 9), "bpchar", None, Free),
            (ty("character(5)", BPCHAR, 9), "text", None, Rewrites),
            (
                ty("interval(3)", INTERVAL, 0x7fff_0003),
                "interval(5)",
                None,
                Free,
            ),
            (
                ty("interval(3)", INTERVAL, 0x7fff_0003),
                "interval",
                None,
                Free,
            ),
            (
                ty("interval(3)", INTERVAL, 0x7fff_0003),
                "interval(2)",
                None,
                Rewrites,
            ),
            (
                ty("interval(3)", INTERVAL, 0x7fff_0003),
                "interval day to second",
                None,
                Unknown,
            ),
            (
                ty("interval year", INTERVAL, 327_679),
                "interval(0)",
                None,
                Free,
            ),
            (ty("interval", INTERVAL, -1), "interval(3)", None, Rewrites),
            (ty("integer", INT4, -1), "bigint", None, Rewrites),
            (ty("integer", INT4, -1), "int", None, Free),
            (ty("integer", INT4, -1), "integer", None, Free),
            (ty("real", FLOAT4, -1), "float(20)", None, Free),
            (ty("real", FLOAT4, -1), "float", None, Rewrites),
            (ty("json", JSON, -1), "jsonb", None, Rewrites),
            (citext.clone(), "text", None, RebuildsIndexes),
            (citext.clone(), "varchar(10)", None, Rewrites),
            (citext.clone(), "citext", None, Free),
            (citext.clone(), "public.citext", None, Free),
            (ty("mytype", 99_999, -1), "text", None, Unknown),
            (ty("integer[]", 1007, -1), "bigint[]", None, Unknown),
        ];
        for (from, to, tz, expected) in cases {
            assert_eq!(
                type_change(&from, to, tz),
                expected,
                "{} -> {to} (TimeZone {tz:?})",
                from.formatted
            );
        }
        assert_eq!(is_binary_coercible(&varchar20, "text"), Some(true));
        assert_eq!(is_binary_coercible(&varchar20, "citext"), Some(true));
        assert_eq!(is_binary_coercible(&varchar20, "varchar(5)"), Some(false));
        assert_eq!(is_binary_coercible(&ts3, "timestamptz"), None);
        assert_eq!(is_binary_coercible(&varchar20, "my_domain"), None);
    }

    #[test]
    fn type_text_parsing_tolerates_spacing_but_not_garbage() {
        for (text, ok) in [
            ("numeric( 10 , 2 )", true),
            ("NUMERIC(10,2)", true),
            ("numeric(10,-2)", true),
            ("numeric(10.5)", false),
            ("numeric(10,2,3)", false),
            ("numeric(", false),
            ("varchar(20) collate", false),
            ("text(3)", false),
            ("a.b.text", false),
            ("", false),
            ("timestamp(-1)", false),
        ] {
            assert_eq!(parse_type(text).is_some(), ok, "{text:?}");
        }
        assert!(is_collatable("varchar(3)") && is_collatable("citext") && is_collatable("??"));
        assert!(!is_collatable("numeric(3)"));
    }
}

//! Hand-built facts for the rules' table-driven tests.

use super::type_change::{Ty, parse_type};
use super::*;
use crate::sql::statement::Name;

/// An existing plain table with the given size.
pub fn table(name: &str, rows: u64, bytes: u64) -> Relation {
    Relation {
        exists: true,
        name: Some(Name::new(Some("public"), name)),
        kind: Some(RelKind::Table),
        rows: Some(rows),
        bytes: Some(bytes),
        ..Relation::missing(Name::bare(name))
    }
}

/// A partitioned table with `leaves` leaf partitions holding `rows` rows in `bytes` bytes.
pub fn partitioned(name: &str, leaves: usize, rows: u64, bytes: u64) -> Relation {
    let parent = Name::new(Some("public"), name);
    Relation {
        kind: Some(RelKind::PartitionedTable),
        partitions: (0..leaves)
            .map(|i| Partition {
                name: Name::new(Some("public"), &format!("{name}_{i}")),
                parent: parent.clone(),
                kind: RelKind::Table,
                level: 1,
            })
            .collect(),
        ..table(name, rows, bytes)
    }
}

/// An existing column of the given type, without constraints or indexes.
pub fn column(name: &str, formatted: &str, oid: u32, typmod: i32) -> ColumnFacts {
    ColumnFacts {
        name: name.to_owned(),
        exists: true,
        data_type: Some(ColumnType {
            formatted: formatted.to_owned(),
            oid,
            typmod,
        }),
        type_is_citext: Some(formatted.rsplit('.').next() == Some("citext")),
        ..ColumnFacts::default()
    }
}

/// Facts about `relation` (and its `columns`), read in a UTC session whose search_path
/// resolves every built-in type name to the built-in (see [`builtin_types`]).
pub fn facts(relation: Relation, columns: Vec<ColumnFacts>) -> Facts {
    Facts {
        relation: Some(relation),
        columns,
        timezone: Some("UTC".to_owned()),
        types: builtin_types(),
        ..Facts::default()
    }
}

/// Every type spelling ddlgate knows, resolved to itself (citext as the extension's).
pub fn builtin_types() -> Vec<TypeFacts> {
    const SPELLINGS: &[&str] = &[
        "varchar",
        "character varying",
        "char varying",
        "char",
        "character",
        "bpchar",
        "numeric",
        "decimal",
        "dec",
        "timestamp",
        "timestamp without time zone",
        "timestamptz",
        "timestamp with time zone",
        "time",
        "time without time zone",
        "timetz",
        "time with time zone",
        "interval",
        "bit",
        "varbit",
        "bit varying",
        "float",
        "text",
        "smallint",
        "int2",
        "int",
        "integer",
        "int4",
        "bigint",
        "int8",
        "real",
        "float4",
        "double precision",
        "float8",
        "bool",
        "boolean",
        "bytea",
        "date",
        "uuid",
        "json",
        "jsonb",
        "xml",
        "inet",
        "cidr",
        "macaddr",
        "macaddr8",
        "money",
        "citext",
        "pg_catalog.text",
        "pg_catalog.varchar",
        "pg_catalog.int8",
        "public.citext",
    ];
    SPELLINGS
        .iter()
        .filter_map(|s| {
            let t = parse_type(s)?;
            Some(TypeFacts {
                asked: (*s).to_owned(),
                oid: match t.ty {
                    Ty::Oid(oid) => Some(oid),
                    Ty::Citext => Some(16_385),
                },
                citext: t.ty == Ty::Citext,
            })
        })
        .collect()
}

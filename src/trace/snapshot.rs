//! What `ddlgate trace` reads from the scratch database around each statement: the locks its
//! own backend holds (`pg_locks`) and the storage of every user relation (`pg_class.relfilenode`),
//! plus the scratch mark. Everything is resolved on the server by OID; nothing here takes a lock
//! on a user relation (only ACCESS SHARE on the catalogs it reads, which the lock report leaves
//! out: catalogs have OIDs below `FirstNormalObjectId`).

use std::collections::HashMap;

use serde::Serialize;
use tokio_postgres::{Client, Statement};

use super::TraceError;

/// The first OID PostgreSQL gives to user objects (`FirstNormalObjectId`): relations below it
/// are the system catalogs, locked by ddlgate's own queries as much as by the statement.
pub const FIRST_USER_OID: u32 = 16_384;

/// One lock held by the trace's backend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Lock {
    /// `pg_locks.locktype`: `relation`, `object`, `advisory`, `tuple`, …
    pub locktype: String,
    /// `pg_locks.mode`, e.g. `AccessExclusiveLock`.
    pub mode: String,
    /// What is locked: a relation's schema-qualified name, an object's catalog and name, an
    /// advisory lock's key.
    pub object: String,
    /// For a relation: its kind (`table`, `index`, …); otherwise the lock type.
    pub kind: String,
    /// The lock conflicts with the ACCESS SHARE lock of a plain SELECT.
    pub blocks_reads: bool,
    /// The lock conflicts with the ROW EXCLUSIVE lock of INSERT / UPDATE / DELETE / MERGE.
    pub blocks_writes: bool,
    /// Identity of the lock (pg_locks fields), to tell new locks from those held before.
    #[serde(skip)]
    pub key: String,
}

/// Whether a relation lock of `mode` blocks plain reads: only ACCESS EXCLUSIVE conflicts with
/// ACCESS SHARE (PostgreSQL's table-level lock conflict matrix).
pub fn blocks_reads(mode: &str) -> bool {
    mode == "AccessExclusiveLock"
}

/// Whether a relation lock of `mode` blocks INSERT / UPDATE / DELETE: the modes that conflict
/// with ROW EXCLUSIVE are SHARE, SHARE ROW EXCLUSIVE, EXCLUSIVE and ACCESS EXCLUSIVE.
pub fn blocks_writes(mode: &str) -> bool {
    matches!(
        mode,
        "ShareLock" | "ShareRowExclusiveLock" | "ExclusiveLock" | "AccessExclusiveLock"
    )
}

/// The locks of this backend, granted, except its own transaction and virtual transaction ids
/// (always held, by every transaction) and locks on system catalogs.
const LOCKS_SQL: &str = "\
SELECT l.locktype, l.mode,
  pg_catalog.concat_ws(':', l.locktype, l.mode, l.database, l.relation, l.page, l.tuple,
    l.classid, l.objid, l.objsubid),
  CASE l.locktype
    WHEN 'relation' THEN (SELECT pg_catalog.format('%I.%I', n.nspname, c.relname)
      FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
      WHERE c.oid = l.relation)
    WHEN 'object' THEN l.classid::pg_catalog.regclass::pg_catalog.text || ' ' || COALESCE(
      CASE l.classid
        WHEN 'pg_catalog.pg_type'::pg_catalog.regclass
          THEN (SELECT pg_catalog.format_type(y.oid, NULL) FROM pg_catalog.pg_type y
                WHERE y.oid = l.objid)
        WHEN 'pg_catalog.pg_namespace'::pg_catalog.regclass
          THEN (SELECT pg_catalog.quote_ident(s.nspname) FROM pg_catalog.pg_namespace s
                WHERE s.oid = l.objid)
        WHEN 'pg_catalog.pg_proc'::pg_catalog.regclass
          THEN (SELECT p.oid::pg_catalog.regprocedure::pg_catalog.text
                FROM pg_catalog.pg_proc p WHERE p.oid = l.objid)
        ELSE 'oid ' || l.objid::pg_catalog.text
      END, 'oid ' || l.objid::pg_catalog.text || ' (dropped)')
    WHEN 'advisory' THEN 'key ' || l.classid::pg_catalog.text || ', ' || l.objid::pg_catalog.text
    ELSE NULL
  END,
  CASE WHEN l.locktype = 'relation' THEN (SELECT c.relkind::pg_catalog.text
    FROM pg_catalog.pg_class c WHERE c.oid = l.relation) END,
  l.relation::pg_catalog.int8, l.objid::pg_catalog.int8
FROM pg_catalog.pg_locks l
WHERE l.pid = pg_catalog.pg_backend_pid() AND l.granted
  AND l.locktype NOT IN ('virtualxid', 'transactionid')
  AND NOT (l.locktype = 'relation' AND l.relation < 16384::pg_catalog.oid)
ORDER BY 1, 4, 2";

/// The two reads made after every statement, prepared once.
pub struct Queries {
    locks: Statement,
    storage: Statement,
    transaction: Statement,
}

impl Queries {
    pub async fn prepare(client: &Client) -> Result<Queries, TraceError> {
        Ok(Queries {
            locks: client.prepare(LOCKS_SQL).await.map_err(internal)?,
            storage: client.prepare(STORAGE_SQL).await.map_err(internal)?,
            transaction: client
                .prepare("SELECT pg_catalog.transaction_timestamp()::pg_catalog.text")
                .await
                .map_err(internal)?,
        })
    }
}

/// The start time of the current transaction, as the server gives it: the same value after
/// every statement proves the trace's transaction was never ended (and so nothing committed).
pub async fn transaction_start(client: &Client, queries: &Queries) -> Result<String, TraceError> {
    client
        .query_one(&queries.transaction, &[])
        .await
        .and_then(|r| r.try_get(0))
        .map_err(internal)
}

/// The locks this backend holds now (see `LOCKS_SQL`).
///
/// A lock on a relation that no longer exists is named from `known` (the storage read before
/// the statement: a relation the statement dropped); one on a relation that existed neither
/// before nor after the statement (the transient heap of a rewrite) is left out: nobody else
/// could see it.
pub async fn locks(
    client: &Client,
    queries: &Queries,
    known: &Storage,
) -> Result<Vec<Lock>, TraceError> {
    let rows = client.query(&queries.locks, &[]).await.map_err(internal)?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let locktype: String = row.try_get(0).map_err(internal)?;
        let mode: String = row.try_get(1).map_err(internal)?;
        let key: String = row.try_get(2).map_err(internal)?;
        let name: Option<String> = row.try_get(3).map_err(internal)?;
        let relkind: Option<String> = row.try_get(4).map_err(internal)?;
        let relation: Option<i64> = row.try_get(5).map_err(internal)?;
        let objid: Option<i64> = row.try_get(6).map_err(internal)?;
        let relation_lock = locktype == "relation";
        let mut kind = match relkind.as_deref() {
            Some(k) => relkind_label(k).to_owned(),
            None => locktype.clone(),
        };
        let object = match (name, relation, objid) {
            (Some(n), _, _) => n,
            (None, Some(oid), _) if relation_lock => {
                let Some(old) = u32::try_from(oid).ok().and_then(|o| known.get(&o)) else {
                    continue;
                };
                old.kind.clone_into(&mut kind);
                format!("{} (dropped)", old.name)
            }
            (None, _, Some(oid)) => format!("oid {oid} (dropped)"),
            _ => String::new(),
        };
        out.push(Lock {
            blocks_reads: relation_lock && blocks_reads(&mode),
            blocks_writes: relation_lock && blocks_writes(&mode),
            locktype,
            mode,
            object,
            kind,
            key,
        });
    }
    Ok(out)
}

/// One user relation with storage, as read after a statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub relfilenode: u32,
    pub kind: &'static str,
    /// Schema-qualified, quoted where needed.
    pub name: String,
}

/// The storage of every user relation that has any (tables, indexes, materialized views,
/// sequences — TOAST tables follow their table), by OID: one short row per relation, read
/// once after each statement (the one after the previous statement is the one before this
/// one). The names let a relation the statement dropped, or rebuilt under a new OID, still be
/// named.
pub type Storage = HashMap<u32, Stored>;

const STORAGE_SQL: &str = "\
SELECT c.oid::pg_catalog.int8, c.relfilenode::pg_catalog.int8, c.relkind::pg_catalog.text,
  pg_catalog.format('%I.%I', n.nspname, c.relname)
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.oid >= 16384::pg_catalog.oid AND c.relkind IN ('r', 'i', 'm', 'S')";

pub async fn storage(client: &Client, queries: &Queries) -> Result<Storage, TraceError> {
    let rows = client
        .query(&queries.storage, &[])
        .await
        .map_err(internal)?;
    let mut out = HashMap::with_capacity(rows.len());
    for row in rows {
        let oid: i64 = row.try_get(0).map_err(internal)?;
        let node: i64 = row.try_get(1).map_err(internal)?;
        let kind: String = row.try_get(2).map_err(internal)?;
        out.insert(
            u32::try_from(oid).unwrap_or_default(),
            Stored {
                relfilenode: u32::try_from(node).unwrap_or_default(),
                kind: relkind_label(&kind),
                name: row.try_get(3).map_err(internal)?,
            },
        );
    }
    Ok(out)
}

/// A relation, named by the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Relation {
    /// Schema-qualified, quoted where needed.
    pub name: String,
    /// `table`, `index`, `materialized view`, `sequence`.
    pub kind: String,
}

/// What a statement did to storage, sorted by name.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Changes {
    /// Relations with new storage: the same OID with a new relfilenode (a rewrite, TRUNCATE),
    /// or a relation of the same name and kind rebuilt under a new OID (the indexes `ALTER
    /// COLUMN … TYPE` re-creates).
    pub rewritten: Vec<Relation>,
    /// Relations that are new.
    pub created: Vec<Relation>,
    /// Relations that are gone.
    pub dropped: Vec<Relation>,
}

pub fn changes(before: &Storage, after: &Storage) -> Changes {
    let rel = |s: &Stored| Relation {
        name: s.name.clone(),
        kind: s.kind.to_owned(),
    };
    let mut out = Changes::default();
    let gone: Vec<&Stored> = before
        .iter()
        .filter(|(oid, _)| !after.contains_key(oid))
        .map(|(_, s)| s)
        .collect();
    for (oid, now) in after {
        match before.get(oid) {
            Some(old) if old.relfilenode != now.relfilenode => out.rewritten.push(rel(now)),
            Some(_) => {}
            None if gone
                .iter()
                .any(|g| g.name == now.name && g.kind == now.kind) =>
            {
                out.rewritten.push(rel(now))
            }
            None => out.created.push(rel(now)),
        }
    }
    for g in gone {
        if !after
            .values()
            .any(|now| now.name == g.name && now.kind == g.kind)
        {
            out.dropped.push(rel(g));
        }
    }
    for list in [&mut out.rewritten, &mut out.created, &mut out.dropped] {
        list.sort_by(|a, b| a.name.cmp(&b.name));
    }
    out
}

/// `pg_class.relkind` in words.
pub fn relkind_label(k: &str) -> &'static str {
    match k {
        "r" => "table",
        "i" => "index",
        "S" => "sequence",
        "t" => "TOAST table",
        "v" => "view",
        "m" => "materialized view",
        "c" => "composite type",
        "f" => "foreign table",
        "p" => "partitioned table",
        "I" => "partitioned index",
        _ => "relation",
    }
}

/// The connected database's name and whether its comment carries the scratch mark
/// (`COMMENT ON DATABASE … IS 'ddlgate:scratch …'`): read from `pg_shdescription` for the
/// database the server says this connection is on.
pub async fn scratch_mark(client: &Client) -> Result<(String, bool), TraceError> {
    let row = client
        .query_one(
            "SELECT pg_catalog.current_database()::pg_catalog.text, \
             pg_catalog.shobj_description(d.oid, 'pg_database') \
             FROM pg_catalog.pg_database d WHERE d.datname = pg_catalog.current_database()",
            &[],
        )
        .await
        .map_err(internal)?;
    let name: String = row.try_get(0).map_err(internal)?;
    let comment: Option<String> = row.try_get(1).map_err(internal)?;
    Ok((name, comment.as_deref().is_some_and(is_scratch_comment)))
}

/// The mark: the comment's first word is exactly `ddlgate:scratch` (a description may follow).
pub fn is_scratch_comment(comment: &str) -> bool {
    comment.split_whitespace().next() == Some(super::SCRATCH_MARK)
}

pub(super) fn internal(e: tokio_postgres::Error) -> TraceError {
    TraceError::Internal(super::describe(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflict_matrix_for_reads_and_writes() {
        let modes = [
            ("AccessShareLock", false, false),
            ("RowShareLock", false, false),
            ("RowExclusiveLock", false, false),
            ("ShareUpdateExclusiveLock", false, false),
            ("ShareLock", false, true),
            ("ShareRowExclusiveLock", false, true),
            ("ExclusiveLock", false, true),
            ("AccessExclusiveLock", true, true),
        ];
        for (mode, reads, writes) in modes {
            assert_eq!(blocks_reads(mode), reads, "{mode}");
            assert_eq!(blocks_writes(mode), writes, "{mode}");
        }
    }

    fn stored(node: u32, kind: &'static str, name: &str) -> Stored {
        Stored {
            relfilenode: node,
            kind,
            name: name.to_owned(),
        }
    }

    #[test]
    fn storage_changes_by_oid_then_by_name() {
        let before: Storage = [
            (1, stored(10, "table", "public.t")),
            (2, stored(20, "index", "public.t_pkey")),
            (3, stored(30, "index", "public.t_x")),
            (4, stored(40, "table", "public.gone")),
            (5, stored(50, "table", "public.same")),
        ]
        .into();
        let after: Storage = [
            (1, stored(11, "table", "public.t")),
            (2, stored(21, "index", "public.t_pkey")),
            // Rebuilt under a new OID (ALTER COLUMN TYPE re-creates it): a rewrite.
            (6, stored(60, "index", "public.t_x")),
            (5, stored(50, "table", "public.same")),
            (7, stored(70, "table", "public.new")),
        ]
        .into();
        let names = |v: &[Relation]| v.iter().map(|r| r.name.clone()).collect::<Vec<_>>();
        let c = changes(&before, &after);
        assert_eq!(
            names(&c.rewritten),
            ["public.t", "public.t_pkey", "public.t_x"]
        );
        assert_eq!(names(&c.created), ["public.new"]);
        assert_eq!(names(&c.dropped), ["public.gone"]);
        assert_eq!(changes(&after, &after), Changes::default());
    }

    #[test]
    fn the_scratch_mark_is_the_first_word() {
        assert!(is_scratch_comment("ddlgate:scratch"));
        assert!(is_scratch_comment("  ddlgate:scratch copy of prod schema"));
        assert!(!is_scratch_comment("not ddlgate:scratch"));
        assert!(!is_scratch_comment("ddlgate:scratchy"));
        assert!(!is_scratch_comment(""));
    }
}

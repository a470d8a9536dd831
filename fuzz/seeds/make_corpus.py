#!/usr/bin/env python3
"""Writes the committed seed corpus (fuzz/corpus/<target>/<name>) for the targets whose inputs
are SQL text, catalog answers or frames. Run from the repository root; it overwrites the named
seeds and leaves everything else (the two pre-authentication targets' seeds) alone.

SQL seeds start with the settings byte `ddlgate::fuzzing::lex_of` reads: 0x00 is the default
session, idle; bit 0 = standard_conforming_strings off, bits 1-3 = client encoding (1 SJIS,
2 BIG5, 3 GBK, 5 GB18030), bits 4-5 = transaction status (1 in a transaction, 2 failed)."""
import os, struct

DEFAULT, SCS_OFF, SJIS, BIG5, GBK, GB18030, IN_TX = 0x00, 0x01, 0x02, 0x04, 0x06, 0x0A, 0x10

SQL = {
    "create_index": (DEFAULT, b"CREATE INDEX idx_users_email ON public.users USING btree (lower(email)) WHERE deleted_at IS NULL"),
    "create_index_concurrently": (DEFAULT, b"CREATE INDEX CONCURRENTLY IF NOT EXISTS i ON t (x)"),
    "create_index_in_tx": (IN_TX, b"CREATE UNIQUE INDEX \"Idx\" ON public.\"T\" (\"X\") -- why"),
    "drop_index": (DEFAULT, b"DROP INDEX IF EXISTS s.i"),
    "drop_index_concurrently_cascade": (DEFAULT, b"drop index concurrently if exists s.\"Ev\" CASCADE"),
    "reindex": (DEFAULT, b"REINDEX (VERBOSE) TABLE public.users"),
    "refresh_mv": (DEFAULT, b"REFRESH /* nightly */ MATERIALIZED VIEW s.\"Totals\" WITH DATA"),
    "detach_partition": (DEFAULT, b"ALTER TABLE m DETACH PARTITION public.m_2020"),
    "add_column_default": (DEFAULT, b"ALTER TABLE orders ADD COLUMN id2 bigserial"),
    "add_column_volatile": (DEFAULT, b"ALTER TABLE t ADD COLUMN c timestamptz NOT NULL DEFAULT now()"),
    "set_not_null": (DEFAULT, b"ALTER TABLE users ALTER COLUMN email SET NOT NULL"),
    "add_fk": (DEFAULT, b"ALTER TABLE orders ADD CONSTRAINT orders_user_fk FOREIGN KEY (user_id) REFERENCES users (id)"),
    "add_check_not_valid": (DEFAULT, b"ALTER TABLE t ADD CONSTRAINT c CHECK (x > 0) NOT VALID; ALTER TABLE t VALIDATE CONSTRAINT c"),
    "add_pk_using_index": (DEFAULT, b"ALTER TABLE t ADD CONSTRAINT t_pkey PRIMARY KEY USING INDEX t_id_idx"),
    "alter_type": (DEFAULT, b"ALTER TABLE t ALTER COLUMN c TYPE varchar(50), ALTER COLUMN d TYPE character varying"),
    "rename": (DEFAULT, b"ALTER TABLE accounts RENAME COLUMN name TO full_name"),
    "drop_table_cascade": (DEFAULT, b"DROP TABLE ev_2025, other CASCADE"),
    "vacuum_full": (DEFAULT, b"VACUUM (FULL, ANALYZE) t"),
    "cluster": (DEFAULT, b"CLUSTER t USING t_pkey"),
    "lock": (IN_TX, b"LOCK TABLE t IN ACCESS EXCLUSIVE MODE NOWAIT"),
    "truncate": (DEFAULT, b"TRUNCATE ONLY t RESTART IDENTITY CASCADE"),
    "create_table": (DEFAULT, b"CREATE TABLE t (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, body text NOT NULL, at timestamptz DEFAULT now())"),
    "migration_multi": (DEFAULT, b"BEGIN; CREATE TABLE t (id bigint PRIMARY KEY, body text); CREATE INDEX t_body ON t (body); INSERT INTO schema_migrations (version) VALUES ('20260101'); COMMIT;"),
    "enum_value_in_tx": (IN_TX, b"ALTER TYPE mood ADD VALUE 'ok' AFTER 'sad'"),
    "override": (DEFAULT, b"/* ddlgate:allow ban-drop-column reason=\"column unused since v42\" */ ALTER TABLE t DROP COLUMN legacy"),
    "override_line": (DEFAULT, b"ALTER TABLE t DROP COLUMN legacy -- ddlgate:allow ban-drop-column,changing-column-type reason=\"backfilled\"\n"),
    "override_bad": (DEFAULT, b"-- ddlgate:allow reason=\"no rule\"\nDROP TABLE t"),
    "do_block": (DEFAULT, b"DO $$ BEGIN EXECUTE format('ALTER TABLE %I ADD COLUMN c int', 't'); END $$"),
    "begin_atomic": (DEFAULT, b"CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT 2; END; CREATE INDEX i ON t (x)"),
    "dollar_tags": (DEFAULT, b"SELECT $a$ ; $b$ ; $a$; CREATE INDEX i ON t ($x$;$x$)"),
    "nested_comment": (DEFAULT, b"/* a /* b; */ c; */ DROP INDEX i; -- ; \nSELECT 1"),
    "e_string_scs_off": (SCS_OFF, b"SELECT 'it\\'s; ok'; CREATE INDEX i ON t (x)"),
    "e_string": (DEFAULT, b"SELECT E'\\'; DROP TABLE t; --'; SELECT 1"),
    "uescape": (DEFAULT, b"CREATE INDEX U&\"d!0061t!+000061\" UESCAPE '!' ON t (x); SELECT U&'\\0041'"),
    "sjis_backslash": (SJIS, b"SELECT '\x95\\'; CREATE INDEX i ON t (x); --'"),
    "big5": (BIG5, b"SELECT '\xa4\\' ; DROP INDEX i"),
    "gbk": (GBK | SCS_OFF, b"SELECT '\x81\\'; DROP INDEX i; '"),
    "gb18030": (GB18030, b"SELECT '\x81\x30\x81\x30'; ALTER TABLE t ADD COLUMN c int"),
    "dblink": (DEFAULT, b"SELECT dblink_exec('host=x', 'DROP TABLE t')"),
    "copy_program": (DEFAULT, b"COPY t FROM PROGRAM 'cat /etc/passwd'"),
    "set_and_select": (DEFAULT, b"SET lock_timeout = '2s'; SELECT abalance FROM pgbench_accounts WHERE aid = 48213;"),
    "unterminated": (DEFAULT, b"CREATE INDEX i ON t (x); SELECT 'open"),
    "parens": (DEFAULT, b"CREATE INDEX i ON t ((((((((x))))))))"),
    "partition_index": (DEFAULT, b"CREATE INDEX ON ONLY measurement (logdate)"),
    "create_trigger": (DEFAULT, b"CREATE TRIGGER trg BEFORE UPDATE ON t FOR EACH ROW EXECUTE FUNCTION f()"),
}

PLPGSQL = {
    "execute_format": b" BEGIN EXECUTE format('ALTER TABLE %I ADD COLUMN %I int', tbl, col); END ",
    "execute_concat": b" DECLARE q text; BEGIN q := 'DROP TABLE ' || quote_ident(t); EXECUTE q; END ",
    "static_ddl": b" BEGIN CREATE INDEX i ON t (x); ALTER TABLE t ALTER COLUMN c SET NOT NULL; END ",
    "loop": b" DECLARE r record; BEGIN FOR r IN SELECT tablename FROM pg_tables LOOP EXECUTE 'VACUUM ' || r.tablename; END LOOP; END ",
    "nested_block": b" <<outer>> BEGIN BEGIN PERFORM 1; EXCEPTION WHEN others THEN RAISE NOTICE 'x'; END; IF true THEN TRUNCATE t; END IF; END outer ",
    "using": b" BEGIN EXECUTE 'UPDATE t SET x = $1' USING 3; EXECUTE format('CREATE TABLE %s (LIKE %s)', a, b); END ",
    "sql_body": b"CREATE INDEX i ON t (x); SELECT 1; DROP TABLE t",
    "dollar_inside": b" BEGIN EXECUTE $q$ALTER TABLE t DROP COLUMN c$q$; END ",
}

CATALOG = {
    "document": open(os.path.join(os.path.dirname(__file__), "document.json"), "rb").read(),
    "empty": b"{}",
    "unknown_relkind": b'{"relation": {"asked_schema": null, "asked_name": "t", "exists": true, "schema": "public", "name": "t", "relkind": "Z", "rows": -5, "bytes": null}, "functions": [{"name": "g", "volatility": ["x"]}]}',
    "heap_bounds": b'{"timezone": "UTC", "relation": {"asked_schema": null, "asked_name": "e", "exists": true, "schema": "public", "name": "e", "relkind": "r", "rows": null, "max_rows": 0, "bytes": 8192}, "referenced": [{"asked_schema": null, "asked_name": "p", "exists": true, "schema": "public", "name": "p", "relkind": "r", "rows": null, "max_rows": 582, "bytes": 16384}]}',
    "types": b'{"timezone": "UTC", "relation": null, "columns": [], "functions": [], "referenced": [], "types": [{"asked": "text", "oid": 16500, "citext": false}, {"asked": "varchar", "oid": 1043, "citext": false}]}',
    "index_referenced": b'{"timezone": "UTC", "relation": null, "referenced": [{"asked_schema": "s", "asked_name": "B", "exists": true, "schema": "s", "name": "B", "relkind": "i", "table_schema": "s", "table_name": "t", "rows": 0, "max_rows": 0, "bytes": 8192}]}',
    "bad_typmod": b'{"columns": [{"name": "c", "exists": true, "type": "x", "type_oid": 1, "typmod": 99999999999, "not_null": true, "collation": null}]}',
    "check_not_null": b"CHECK ((email IS NOT NULL))\x00email",
    "check_and": b"CHECK (((email IS NOT NULL) AND (length((email)::text) > 3)))\x00email",
    "check_or": b"CHECK (((email IS NOT NULL) OR (x > 0)))\x00email",
    "check_quoted": b"CHECK ((\"E-mail\" IS NOT NULL)) NOT VALID\x00E-mail",
}

def msg(tag, body):
    return tag + struct.pack(">I", len(body) + 4) + body

FRAMES = {
    "query": struct.pack(">I", 1 << 20) + msg(b"Q", b"SELECT 1\x00"),
    "extended": struct.pack(">I", 1 << 20) + msg(b"P", b"\x00CREATE INDEX i ON t (x)\x00\x00\x00") + msg(b"B", b"\x00\x00\x00\x00\x00\x00\x00\x00") + msg(b"E", b"\x00\x00\x00\x00\x00") + msg(b"S", b""),
    "too_large": struct.pack(">I", 16) + msg(b"Q", b"SELECT 123456789012345\x00"),
    "bad_length": struct.pack(">I", 1 << 20) + b"Q\x00\x00\x00\x02",
    "partial": struct.pack(">I", 1 << 20) + msg(b"d", b"copy data row\n")[:9],
    "terminate": struct.pack(">I", 1 << 30) + msg(b"X", b""),
}

def write(target, name, data):
    d = os.path.join("fuzz", "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)

for target in ["split", "prefilter", "fallback", "understand", "analysis", "rewrite", "overrides"]:
    for name, (settings, sql) in SQL.items():
        write(target, name, bytes([settings]) + sql)
for name, body in PLPGSQL.items():
    write("plpgsql", name, b"\x00" + body)
write("plpgsql", "sjis_body", bytes([SJIS]) + b" BEGIN EXECUTE '\x95\\'' || 'DROP TABLE t'; END ")
for name, data in CATALOG.items():
    write("catalog", name, data)
for name, data in FRAMES.items():
    write("frames", name, data)

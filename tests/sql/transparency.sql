-- A varied psql session: DDL, DML, errors, notices, COPY, transactions. Run once directly and
-- once through ddlgate, its output must be byte-identical. It cleans up after itself so both
-- runs start from the same state.
\set VERBOSITY verbose
\pset pager off
CREATE TABLE items (id serial PRIMARY KEY, name text NOT NULL, price numeric(10,2), tags text[], meta jsonb, created date DEFAULT '2024-01-01');
CREATE INDEX items_name_idx ON items (name);
INSERT INTO items (name, price, tags, meta) VALUES ('apple', 1.25, '{red,fruit}', '{"k": 1}'), ('pear', 2.5, NULL, '{"k": [1,2]}'), ('naïve ☃', 0, '{}', 'null');
SELECT * FROM items ORDER BY id;
SELECT name, price * 2 AS double FROM items WHERE price > $$1$$::numeric ORDER BY 1;
UPDATE items SET price = price + 1 WHERE name = 'pear' RETURNING id, price;
DELETE FROM items WHERE id = 999;
SELECT 1/0;
SELECT * FROM missing_table;
DO $$ BEGIN RAISE NOTICE 'notice from %', 'plpgsql'; RAISE WARNING 'careful'; END $$;
BEGIN;
INSERT INTO items (name) VALUES ('in-tx');
SELECT broken syntax here;
SELECT 1;
ROLLBACK;
BEGIN;
SAVEPOINT s1;
INSERT INTO items (name) VALUES (NULL);
ROLLBACK TO SAVEPOINT s1;
INSERT INTO items (name) VALUES ('after savepoint');
COMMIT;
COPY items (name, price) FROM STDIN WITH (FORMAT csv);
copied one,3.50
"copied, two",4
\.
COPY items (name, price) FROM STDIN;
bad line without tabs
\.
COPY (SELECT id, name FROM items ORDER BY id) TO STDOUT WITH (FORMAT csv, HEADER);
SELECT count(*), sum(price) FROM items;
PREPARE p(int) AS SELECT name FROM items WHERE id = $1;
EXECUTE p(1);
DEALLOCATE p;
SELECT 1 AS a \; SELECT 2 AS b \; SELECT 3 AS c;
SELECT 'multi' AS x \; SELECT 1/0 \; SELECT 'never';
EXPLAIN (COSTS OFF) SELECT * FROM items WHERE id = 1;
\d items
SELECT length(repeat('x', 100000)) AS big;
SELECT E'tab\there', 'it''s', U&'\0041', $tag$ dollar ; quoted $tag$ /* not a comment */;
/* a /* nested */ comment */ SELECT 'after comment' -- trailing
;
SET client_min_messages = warning;
DROP TABLE IF EXISTS nope;
RESET client_min_messages;
DROP TABLE IF EXISTS nope;
LISTEN chan;
UNLISTEN chan;
SELECT current_setting('standard_conforming_strings');
\echo done
DROP TABLE items;

//! PostgreSQL's keyword categories (`src/include/parser/kwlist.h`), as far as ddlgate needs
//! them: the fallback classifier, to know which words can be a name; recipes, to quote names
//! exactly as `quote_ident` does. Unreserved keywords are ordinary names and are not listed.

/// PostgreSQL's RESERVED_KEYWORDs (`src/include/parser/kwlist.h`, PG 12–19): never an unquoted
/// name.
pub const RESERVED: &str = "all analyse analyze and any array as asc asymmetric both case cast check \
    collate column constraint create current_catalog current_date current_role current_time \
    current_timestamp current_user default deferrable desc distinct do else end except false \
    fetch for foreign from grant group having in initially intersect into lateral leading limit \
    localtime localtimestamp not null offset on only or order placing primary references \
    returning select session_user some symmetric system_user table then to trailing true union \
    unique user using variadic when where window with";

/// TYPE_FUNC_NAME_KEYWORDs: allowed as function or type names, not as `ColId` (so not as a
/// table, index or column name), e.g. `DROP INDEX concurrently` is a syntax error.
pub const TYPE_FUNC_NAME: &str = "authorization binary collation concurrently cross current_schema \
    freeze full ilike inner is isnull join left like natural notnull outer overlaps right \
    similar tablesample verbose";

/// COL_NAME_KEYWORDs (including the SQL/JSON ones of PostgreSQL 16–18).
pub const COL_NAME: &str = "between bigint bit boolean char character coalesce dec decimal exists \
    extract float greatest grouping inout int integer interval json json_array json_arrayagg \
    json_exists json_object json_objectagg json_query json_scalar json_serialize json_table \
    json_value least merge_action national nchar none normalize nullif numeric out overlay \
    position precision real row setof smallint substring time timestamp treat trim values \
    varchar xmlattributes xmlconcat xmlelement xmlexists xmlforest xmlnamespaces xmlparse xmlpi \
    xmlroot xmlserialize xmltable";

/// `word` is one of the space-separated keywords of `list`, ignoring ASCII case.
pub fn in_list(word: &[u8], list: &str) -> bool {
    list.split_ascii_whitespace()
        .any(|k| word.eq_ignore_ascii_case(k.as_bytes()))
}

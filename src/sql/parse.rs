//! Full parsing of DDL candidates with `sqlparser` (PostgreSqlDialect), converted into
//! ddlgate's own model (`sql::statement`). This is the only file that sees sqlparser's AST.
//!
//! Only statements the prefilter marked as DDL candidates come here. When sqlparser rejects a
//! statement PostgreSQL accepts (REINDEX, CLUSTER, `VACUUM (…)`, `DROP INDEX CONCURRENTLY`,
//! `CREATE INDEX … ON ONLY`, DO, …), the lexer-based fallback classifier takes over; what
//! neither understands is `Understood::Unknown`, which the policy blocks by default.
//!
//! Nothing a client sends may exhaust the stack. sqlparser guards its own recursion, but it
//! builds operator chains (`1+1+…`, `a OR b OR …`, `UNION …`) in loops into trees as deep as
//! the chain, and dropping or printing such a tree recurses once per level. So a statement is
//! measured on its tokens first ([`too_complex`]) and, beyond the bounds, not parsed at all
//! and not understood (fail closed, counted as unparsed). ddlgate's own model
//! (`sql::statement`) is flat, and its readers (fallback, bodies, recipes) are loops over tokens.

use sqlparser::ast::{
    AlterColumnOperation, AlterTableOperation, AlterTypeOperation, ColumnDef, ColumnOption,
    DetachPartitionMode, Expr, GeneratedExpressionMode, Ident, LockTableMode, ObjectName,
    ObjectNamePart, ObjectType, Statement, TableConstraint, UserDefinedTypeRepresentation,
};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

use super::fallback;
use super::lexer::{LexOptions, Lexer, Token, TokenKind};
use super::statement::{
    AddColumn, AddConstraint, AlterOp, ConstraintKind, Ddl, DdlKind, DefaultExpr, LockMode, Name,
    Understood,
};

/// Deep enough for any real DDL; hostile nesting fails the parse (and falls back) instead of
/// exhausting the stack.
const RECURSION_LIMIT: usize = 200;

/// Parentheses and brackets nested deeper than this make a statement too complex to
/// understand. PostgreSQL's own DDL never needs more; the server itself rejects much deeper
/// nesting ("stack depth limit exceeded").
pub const MAX_NESTING: usize = 100;

/// Operators and operator keywords on any one path through a statement's parentheses (see
/// [`too_complex`]). A safety bound, not policy: sqlparser builds `1+1+…` and `a OR b OR …`
/// chains in a loop, not by recursion, so its recursion limit does not see them, but the tree it
/// returns is one level deeper per operator and is dropped (and printed) recursively. 35,000
/// `+1` overflowed a 2 MiB tokio worker stack; 16,000 did not, even in a debug build; this
/// leaves a wide margin for the frames of the session above the analysis.
pub const MAX_CHAIN: usize = 8_000;

/// Keywords that sqlparser's expression and query parsers treat as infix or postfix operators
/// (`parse_infix`, `get_next_precedence_default`, set operations): each can add one level to
/// a left-deep tree without any recursion in the parser.
const CHAIN_KEYWORDS: &[&str] = &[
    "and",
    "or",
    "xor",
    "not",
    "is",
    "isnull",
    "notnull",
    "in",
    "between",
    "like",
    "ilike",
    "similar",
    "regexp",
    "rlike",
    "glob",
    "match",
    "div",
    "operator",
    "at",
    "collate",
    "overlaps",
    "member",
    "escape",
    "union",
    "except",
    "intersect",
    "minus",
];

/// Understands one DDL candidate: `sql[start..end]` is the statement (without its `;`).
///
/// A statement too deep or too long in its expression chains to be read safely (see
/// [`too_complex`]) is not understood at all: no reader sees it, and the policy blocks it as
/// `unparsed-ddl` (fail closed).
pub fn understand(sql: &[u8], start: usize, end: usize, opts: LexOptions) -> Ddl {
    let tokens = super::lexer::tokens(sql, start, end, opts);
    understand_tokens(sql, &tokens, start, end, opts)
}

/// [`understand`] over the statement's tokens (every token of `sql[start..end]`, comments
/// included), lexed once by the caller: the complexity pre-check, the DML side-effect reader
/// and the remote-call search read them instead of lexing the statement again. sqlparser has
/// its own tokenizer; the fallback classifier (statements sqlparser rejects) lexes on its own.
pub fn understand_tokens(
    sql: &[u8],
    tokens: &[Token],
    start: usize,
    end: usize,
    opts: LexOptions,
) -> Ddl {
    if too_complex_in(sql, tokens.iter().copied()) {
        return Ddl {
            kind: DdlKind::Unknown,
            understood: Understood::Unknown,
        };
    }
    // A statement that starts like DML came here because it may run SQL or a program out of
    // ddlgate's sight (see `side_effects`); its tokens decide.
    let bounded = sql.get(..end).unwrap_or(sql);
    if let Some(ddl) = super::side_effects::understand_tokens(bounded, tokens.iter().copied()) {
        return ddl;
    }
    let ddl = understand_ddl(sql, start, end, opts);
    // DDL that runs a query as it executes (CREATE TABLE … AS, a USING or DEFAULT expression),
    // or stores one that runs later (views, policies, trigger conditions, rules), runs a dblink
    // call in it too. Not where `name(` is a signature (DROP / ALTER / GRANT … FUNCTION): those
    // stay what they are. DO and function bodies are read by the rule itself.
    let runs_query = match &ddl.kind {
        DdlKind::CreateTable { .. } | DdlKind::AlterTable { .. } | DdlKind::CreateRule { .. } => {
            true
        }
        DdlKind::Other { tag } => {
            (tag.starts_with("CREATE ") || tag.starts_with("ALTER "))
                && (tag.ends_with(" VIEW") || tag.ends_with(" POLICY") || tag.ends_with(" TRIGGER"))
        }
        _ => false,
    };
    if runs_query
        && super::side_effects::mentions_remote(bounded.get(start..).unwrap_or_default())
        && let Some(function) =
            super::side_effects::remote_call_tokens(bounded, tokens.iter().copied())
    {
        return Ddl {
            kind: DdlKind::RemoteSql { function },
            understood: ddl.understood,
        };
    }
    ddl
}

fn understand_ddl(sql: &[u8], start: usize, end: usize, opts: LexOptions) -> Ddl {
    let text = sql.get(start..end).unwrap_or_default();
    // sqlparser works on &str. PostgreSQL's own encodings are all ASCII-compatible for the
    // syntax the rules care about; anything else goes straight to the token classifier.
    if let Ok(text) = std::str::from_utf8(text)
        && let Some(kind) = parse_one(text)
    {
        return Ddl {
            kind,
            understood: Understood::Parsed,
        };
    }
    fallback::classify(sql, start, end, opts)
}

/// Whether `sql[start..end]` is beyond what ddlgate reads: parentheses/brackets nested more
/// than [`MAX_NESTING`] deep, or more than [`MAX_CHAIN`] operators along one path of nested
/// parentheses. The cost of every path is the operators of each enclosing parenthesis level
/// (all of them, not only those before the nested part) plus the deepest path below it, which
/// bounds the depth of any expression or set-operation tree a parser can build from these
/// tokens. Commas do not reset the count (`SELECT 1, 1 UNION SELECT 1, 1 UNION …` is one
/// chain). One pass over the tokens, no allocation beyond one entry per open parenthesis
/// (at most [`MAX_NESTING`]).
pub fn too_complex(sql: &[u8], start: usize, end: usize, opts: LexOptions) -> bool {
    let sql = sql.get(..end).unwrap_or(sql);
    too_complex_in(sql, Lexer::at(sql, start, opts))
}

/// [`too_complex`] over a statement's tokens.
fn too_complex_in(sql: &[u8], tokens: impl IntoIterator<Item = Token>) -> bool {
    // Per open parenthesis: (operators at this level, deepest path below it).
    let mut levels: Vec<(usize, usize)> = vec![(0, 0)];
    // Sum of the operators of every open level, kept as it changes: O(1) per token, so even a
    // 64 MiB statement of `()()()…` costs one pass.
    let mut path = 0usize;
    let mut brackets = 0usize;
    for t in tokens.into_iter().filter(|t| !t.is_comment()) {
        let weight = match t.kind {
            TokenKind::LParen => {
                if levels.len() + brackets > MAX_NESTING {
                    return true;
                }
                levels.push((0, 0));
                continue;
            }
            TokenKind::RParen => {
                // An unbalanced `)` is a syntax error; the readers reject it themselves.
                if levels.len() > 1
                    && let Some((ops, below)) = levels.pop()
                    && let Some(parent) = levels.last_mut()
                {
                    path -= ops;
                    parent.1 = parent.1.max(ops + below);
                }
                0
            }
            TokenKind::Operator => {
                // Every operator character counts: sqlparser splits runs PostgreSQL reads as
                // one operator (`+-+-`), and `[` nests like a parenthesis.
                for &b in t.text(sql) {
                    match b {
                        b'[' => brackets += 1,
                        b']' => brackets = brackets.saturating_sub(1),
                        _ => {}
                    }
                }
                if levels.len() + brackets > MAX_NESTING {
                    return true;
                }
                t.end - t.start
            }
            TokenKind::Word
                if CHAIN_KEYWORDS
                    .iter()
                    .any(|k| t.text(sql).eq_ignore_ascii_case(k.as_bytes())) =>
            {
                1
            }
            _ => continue,
        };
        if let Some(level) = levels.last_mut() {
            level.0 += weight;
            path += weight;
        }
        let deepest = levels.last().map_or(0, |(_, below)| *below);
        if path + deepest > MAX_CHAIN {
            return true;
        }
    }
    false
}

fn parse_one(text: &str) -> Option<DdlKind> {
    #[cfg(test)]
    super::counting::PARSES.with(|c| c.set(c.get() + 1));
    let dialect = PostgreSqlDialect {};
    let mut statements = Parser::new(&dialect)
        .with_recursion_limit(RECURSION_LIMIT)
        .try_with_sql(text)
        .ok()?
        .parse_statements()
        .ok()?;
    if statements.len() != 1 {
        return None;
    }
    convert(statements.pop()?, text)
}

/// Maps a parsed statement; `None` when the AST does not carry what the rules need, so the
/// fallback classifier (which reads the tokens) decides instead.
fn convert(statement: Statement, text: &str) -> Option<DdlKind> {
    Some(match statement {
        Statement::CreateIndex(ci) => DdlKind::CreateIndex {
            name: ci.name.as_ref().map(name),
            table: name(&ci.table_name),
            unique: ci.unique,
            concurrently: ci.concurrently,
            if_not_exists: ci.if_not_exists,
            only: false,
            columns: ci.columns.len(),
        },
        Statement::Drop {
            object_type,
            if_exists,
            names,
            cascade,
            ..
        } => match object_type {
            // sqlparser has no CONCURRENTLY for DROP INDEX (it fails on it), so what it parses
            // is the plain form.
            ObjectType::Index => DdlKind::DropIndex {
                names: names.iter().map(name).collect(),
                concurrently: false,
                if_exists,
                cascade,
            },
            ObjectType::Table => DdlKind::DropTable {
                names: names.iter().map(name).collect(),
                cascade,
            },
            ObjectType::Database => DdlKind::DropDatabase,
            // Whether CASCADE reaches dependent tables is read from the tokens.
            _ => return None,
        },
        Statement::CreateTable(ct) => {
            let mut references = Vec::new();
            for column in &ct.columns {
                for option in &column.options {
                    if let ColumnOption::ForeignKey(fk) = &option.option {
                        references.push(name(&fk.foreign_table));
                    }
                }
            }
            for constraint in &ct.constraints {
                if let TableConstraint::ForeignKey(fk) = constraint {
                    references.push(name(&fk.foreign_table));
                }
            }
            DdlKind::CreateTable {
                name: name(&ct.name),
                temporary: ct.temporary,
                partition_of: ct.partition_of.as_ref().map(name),
                references,
                if_not_exists: ct.if_not_exists,
                columns: ct.columns.iter().map(add_column).collect(),
            }
        }
        // A materialized view is a relation made from a query, like `CREATE TABLE … AS`: for
        // the rules, the guard (it reads its sources as a SELECT does) and "created in this
        // transaction", it is a new table.
        Statement::CreateView(v) if v.materialized && !v.or_replace && !v.or_alter => {
            DdlKind::CreateTable {
                name: name(&v.name),
                temporary: false,
                partition_of: None,
                references: Vec::new(),
                if_not_exists: v.if_not_exists,
                columns: Vec::new(),
            }
        }
        Statement::AlterTable(at) => {
            let mut ops = Vec::with_capacity(at.operations.len());
            for op in at.operations {
                ops.push(alter_op(op)?);
            }
            DdlKind::AlterTable {
                name: name(&at.name),
                only: at.only,
                if_exists: at.if_exists,
                ops,
            }
        }
        Statement::Truncate(t) => DdlKind::Truncate {
            names: t.table_names.iter().map(|t| name(&t.name)).collect(),
            cascade: matches!(t.cascade, Some(sqlparser::ast::CascadeOption::Cascade)),
        },
        Statement::Lock(lock) => DdlKind::Lock {
            tables: lock.tables.iter().map(|t| name(&t.name)).collect(),
            mode: lock
                .lock_mode
                .map(lock_mode)
                .unwrap_or(LockMode::AccessExclusive),
        },
        Statement::RefreshMaterializedView(r) => DdlKind::RefreshMaterializedView {
            name: name(&r.name),
            concurrently: r.concurrently,
        },
        Statement::AlterType(at) => match at.operation {
            AlterTypeOperation::AddValue(add) => DdlKind::AlterTypeAddValue {
                type_name: name(&at.name),
                value: Some(add.value.value.clone()),
                positioned: add.position.is_some(),
            },
            AlterTypeOperation::RenameValue(_) => DdlKind::AlterTypeRenameValue {
                type_name: name(&at.name),
            },
            AlterTypeOperation::Rename(r) => DdlKind::RenameObject {
                tag: "ALTER TYPE".to_owned(),
                name: name(&at.name),
                to: ident(&r.new_name),
            },
        },
        Statement::CreateType {
            name: n,
            representation: Some(UserDefinedTypeRepresentation::Enum { .. }),
        } => DdlKind::CreateEnum { name: name(&n) },
        // The remaining forms either matter only through their command tag, or carry details
        // (VACUUM options, function bodies, DO) that the token classifier reads more
        // faithfully than sqlparser's dialect-neutral AST: let it decide.
        Statement::Vacuum(_) | Statement::CreateFunction(_) | Statement::AlterIndex { .. } => {
            return None;
        }
        _ => {
            let tag = command_tag(text);
            if fallback_decides(&tag) {
                return None;
            }
            DdlKind::Other { tag }
        }
    })
}

/// Commands whose details decide a rule (CASCADE, a rename, a rule's event), which the token
/// classifier reads and sqlparser's AST does not carry uniformly.
fn fallback_decides(tag: &str) -> bool {
    tag.starts_with("DROP ")
        || (tag.starts_with("CREATE ") && tag.ends_with(" RULE"))
        || matches!(
            tag,
            "ALTER SCHEMA"
                | "ALTER VIEW"
                | "ALTER MATERIALIZED VIEW"
                | "ALTER TYPE"
                | "ALTER FOREIGN TABLE"
                // A rename is what the `renaming-object` rule reads.
                | "ALTER SEQUENCE"
                | "ALTER FUNCTION"
                | "ALTER PROCEDURE"
                | "ALTER ROUTINE"
                | "ALTER AGGREGATE"
                // sqlparser keeps a domain's constraints out of what the command tag says.
                | "CREATE DOMAIN"
                | "ALTER DOMAIN"
        )
}

fn alter_op(op: AlterTableOperation) -> Option<AlterOp> {
    Some(match op {
        AlterTableOperation::AddColumn { column_def, .. } => {
            AlterOp::AddColumn(add_column(&column_def))
        }
        AlterTableOperation::DropColumn { column_names, .. } => {
            // PostgreSQL drops one column per DROP COLUMN sub-command.
            let [column] = column_names.as_slice() else {
                return None;
            };
            AlterOp::DropColumn {
                name: ident(column),
            }
        }
        AlterTableOperation::RenameColumn {
            old_column_name,
            new_column_name,
        } => AlterOp::RenameColumn {
            from: ident(&old_column_name),
            to: ident(&new_column_name),
        },
        AlterTableOperation::RenameTable { table_name } => {
            let (sqlparser::ast::RenameTableNameKind::As(n)
            | sqlparser::ast::RenameTableNameKind::To(n)) = table_name;
            AlterOp::RenameTable { to: name(&n).name }
        }
        AlterTableOperation::AlterColumn { column_name, op } => {
            let column = ident(&column_name);
            match op {
                AlterColumnOperation::SetNotNull => AlterOp::SetNotNull { column },
                AlterColumnOperation::DropNotNull => AlterOp::DropNotNull { column },
                AlterColumnOperation::SetDefault { .. } => AlterOp::SetDefault { column },
                AlterColumnOperation::DropDefault => AlterOp::DropDefault { column },
                AlterColumnOperation::SetDataType {
                    data_type, using, ..
                } => AlterOp::AlterColumnType {
                    using: using
                        .as_ref()
                        .is_some_and(|u| !casts_column_to(u, &column, &data_type)),
                    column,
                    data_type: data_type.to_string().to_lowercase(),
                },
                other => AlterOp::Other(format!(
                    "ALTER COLUMN {}",
                    first_words(&other.to_string(), 2)
                )),
            }
        }
        AlterTableOperation::AddConstraint {
            constraint,
            not_valid,
        } => {
            let (cname, kind) = table_constraint(&constraint)?;
            let index = match &constraint {
                TableConstraint::UniqueUsingIndex(u) | TableConstraint::PrimaryKeyUsingIndex(u) => {
                    Some(ident(&u.index_name))
                }
                _ => None,
            };
            AlterOp::AddConstraint(AddConstraint {
                name: cname,
                kind,
                not_valid,
                index,
            })
        }
        AlterTableOperation::ValidateConstraint { name } => {
            AlterOp::ValidateConstraint { name: ident(&name) }
        }
        AlterTableOperation::DropConstraint { name, .. } => {
            AlterOp::DropConstraint { name: ident(&name) }
        }
        AlterTableOperation::SetLogged => AlterOp::SetLogged,
        AlterTableOperation::SetUnlogged => AlterOp::SetUnlogged,
        AlterTableOperation::AttachPartitionOf { partition, .. } => AlterOp::AttachPartition {
            partition: name(&partition),
        },
        AlterTableOperation::DetachPartitionOf { partition, mode } => AlterOp::DetachPartition {
            partition: name(&partition),
            concurrently: matches!(mode, Some(DetachPartitionMode::Concurrently)),
        },
        AlterTableOperation::EnableTrigger { .. }
        | AlterTableOperation::EnableAlwaysTrigger { .. }
        | AlterTableOperation::EnableReplicaTrigger { .. } => AlterOp::EnableTrigger,
        AlterTableOperation::DisableTrigger { .. } => AlterOp::DisableTrigger,
        AlterTableOperation::EnableRowLevelSecurity
        | AlterTableOperation::DisableRowLevelSecurity
        | AlterTableOperation::ForceRowLevelSecurity
        | AlterTableOperation::NoForceRowLevelSecurity => AlterOp::RowLevelSecurity,
        other => AlterOp::Other(first_words(&other.to_string(), 2)),
    })
}

fn add_column(def: &ColumnDef) -> AddColumn {
    let data_type = def.data_type.to_string().to_lowercase();
    let serial = matches!(
        data_type.as_str(),
        "serial" | "bigserial" | "smallserial" | "serial2" | "serial4" | "serial8"
    );
    let mut column = AddColumn {
        name: ident(&def.name),
        data_type,
        not_null: false,
        default: None,
        serial,
        identity: false,
        generated_stored: false,
        generated_virtual: false,
        constraints: Vec::new(),
    };
    for option in &def.options {
        match &option.option {
            ColumnOption::NotNull => column.not_null = true,
            ColumnOption::Default(expr) => column.default = Some(default_expr(expr)),
            ColumnOption::Generated {
                generation_expr: None,
                ..
            }
            | ColumnOption::Identity(_) => column.identity = true,
            ColumnOption::Generated {
                generation_expr: Some(_),
                generation_expr_mode,
                ..
            } => {
                match generation_expr_mode {
                    Some(GeneratedExpressionMode::Stored) => column.generated_stored = true,
                    // PostgreSQL 18 made VIRTUAL the default kind.
                    _ => column.generated_virtual = true,
                }
            }
            ColumnOption::ForeignKey(fk) => column.constraints.push(ConstraintKind::ForeignKey {
                references: name(&fk.foreign_table),
            }),
            ColumnOption::Unique(_) => column
                .constraints
                .push(ConstraintKind::Unique { using_index: false }),
            ColumnOption::PrimaryKey(_) => {
                column.not_null = true;
                column
                    .constraints
                    .push(ConstraintKind::PrimaryKey { using_index: false })
            }
            ColumnOption::Check(_) => column.constraints.push(ConstraintKind::Check),
            _ => {}
        }
    }
    column
}

fn table_constraint(c: &TableConstraint) -> Option<(Option<String>, ConstraintKind)> {
    Some(match c {
        TableConstraint::ForeignKey(fk) => (
            fk.name.as_ref().map(ident),
            ConstraintKind::ForeignKey {
                references: name(&fk.foreign_table),
            },
        ),
        TableConstraint::Check(ck) => (ck.name.as_ref().map(ident), ConstraintKind::Check),
        TableConstraint::Unique(u) => (
            u.name.as_ref().map(ident),
            ConstraintKind::Unique { using_index: false },
        ),
        TableConstraint::PrimaryKey(pk) => (
            pk.name.as_ref().map(ident),
            ConstraintKind::PrimaryKey { using_index: false },
        ),
        TableConstraint::UniqueUsingIndex(u) => (
            u.name.as_ref().map(ident),
            ConstraintKind::Unique { using_index: true },
        ),
        TableConstraint::PrimaryKeyUsingIndex(u) => (
            u.name.as_ref().map(ident),
            ConstraintKind::PrimaryKey { using_index: true },
        ),
        TableConstraint::Exclude(_) => (None, ConstraintKind::Exclusion),
        // MySQL-only forms; PostgreSQL has none of them.
        TableConstraint::Index(_) | TableConstraint::FulltextOrSpatial(_) => return None,
    })
}

fn default_expr(expr: &Expr) -> DefaultExpr {
    let text = expr.to_string();
    DefaultExpr {
        functions: called_functions(&text),
        text,
    }
}

/// Names of the functions an expression calls: each word directly followed by `(`, lower-cased
/// and unqualified (`public.gen_random_uuid(` → `gen_random_uuid`).
pub(crate) fn called_functions(text: &str) -> Vec<String> {
    let sql = text.as_bytes();
    let tokens: Vec<_> = Lexer::new(sql, LexOptions::default())
        .filter(|t| !t.is_comment())
        .collect();
    tokens
        .windows(2)
        .filter(|w| {
            matches!(w[0].kind, TokenKind::Word | TokenKind::QuotedIdent)
                && w[1].kind == TokenKind::LParen
        })
        .map(|w| {
            let raw = String::from_utf8_lossy(w[0].text(sql)).into_owned();
            if w[0].kind == TokenKind::QuotedIdent {
                raw.trim_matches('"').to_owned()
            } else {
                raw.to_ascii_lowercase()
            }
        })
        .collect()
}

fn lock_mode(m: LockTableMode) -> LockMode {
    match m {
        LockTableMode::AccessShare => LockMode::AccessShare,
        LockTableMode::RowShare => LockMode::RowShare,
        LockTableMode::RowExclusive => LockMode::RowExclusive,
        LockTableMode::ShareUpdateExclusive => LockMode::ShareUpdateExclusive,
        LockTableMode::Share => LockMode::Share,
        LockTableMode::ShareRowExclusive => LockMode::ShareRowExclusive,
        LockTableMode::Exclusive => LockMode::Exclusive,
        LockTableMode::AccessExclusive => LockMode::AccessExclusive,
    }
}

/// Folds an identifier the way PostgreSQL does: unquoted → ASCII lower case.
/// `USING c::t`, `USING (c::t)` or `USING CAST(c AS t)` on the altered column `c`, where `t`
/// is the new type itself: the conversion PostgreSQL applies without USING, which rewrites the
/// table exactly when the change without it would (the server plans the expression and looks
/// for the bare column). knex's `.alter()` writes it on every column change (`alter column
/// "total" type decimal(12, 2) using ("total"::decimal(12, 2))`), so a USING of this shape
/// decides nothing about a rewrite.
fn casts_column_to(using: &Expr, column: &str, to: &sqlparser::ast::DataType) -> bool {
    match using {
        Expr::Nested(e) => casts_column_to(e, column, to),
        Expr::Cast {
            kind: sqlparser::ast::CastKind::Cast | sqlparser::ast::CastKind::DoubleColon,
            expr,
            data_type,
            format: None,
        } => data_type == to && matches!(expr.as_ref(), Expr::Identifier(i) if ident(i) == column),
        _ => false,
    }
}

fn ident(i: &Ident) -> String {
    if i.quote_style.is_some() {
        i.value.clone()
    } else {
        i.value.to_ascii_lowercase()
    }
}

/// The last two parts of an object name (`db.schema.table` → `schema.table`).
fn name(o: &ObjectName) -> Name {
    let parts: Vec<String> =
        o.0.iter()
            .map(|p| match p {
                ObjectNamePart::Identifier(i) => ident(i),
                other => other.to_string(),
            })
            .collect();
    match parts.as_slice() {
        [.., schema, table] => Name {
            schema: Some(schema.clone()),
            name: table.clone(),
        },
        [table] => Name {
            schema: None,
            name: table.clone(),
        },
        [] => Name {
            schema: None,
            name: String::new(),
        },
    }
}

/// The command tag of a statement from its leading keywords, e.g. `CREATE VIEW`,
/// `CREATE MATERIALIZED VIEW`, `COMMENT`.
pub fn command_tag(text: &str) -> String {
    let sql = text.as_bytes();
    let mut words = Lexer::new(sql, LexOptions::default())
        .filter(|t| !t.is_comment())
        .take_while(|t| t.kind == TokenKind::Word)
        .map(|t| String::from_utf8_lossy(t.text(sql)).to_ascii_uppercase());
    let first = words.next().unwrap_or_default();
    match first.as_str() {
        "CREATE" | "ALTER" | "DROP" => {
            let mut tag = first;
            for w in words {
                let filler = matches!(
                    w.as_str(),
                    "OR" | "REPLACE"
                        | "TEMP"
                        | "TEMPORARY"
                        | "UNLOGGED"
                        | "RECURSIVE"
                        | "GLOBAL"
                        | "LOCAL"
                );
                tag.push(' ');
                tag.push_str(&w);
                if !filler
                    && !matches!(
                        w.as_str(),
                        "MATERIALIZED"
                            | "FOREIGN"
                            | "EVENT"
                            | "TEXT"
                            | "SEARCH"
                            | "USER"
                            | "ACCESS"
                            | "DEFAULT"
                    )
                {
                    break;
                }
            }
            tag
        }
        _ => first,
    }
}

fn first_words(s: &str, n: usize) -> String {
    s.split_whitespace()
        .take(n)
        .collect::<Vec<_>>()
        .join(" ")
        .to_uppercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ddl(sql: &str) -> Ddl {
        understand(sql.as_bytes(), 0, sql.len(), LexOptions::default())
    }

    fn parsed(sql: &str) -> DdlKind {
        let d = ddl(sql);
        assert_eq!(
            d.understood,
            Understood::Parsed,
            "{sql} should parse with sqlparser"
        );
        d.kind
    }

    #[test]
    fn create_index_keeps_its_options() {
        match parsed(
            "CREATE UNIQUE INDEX IF NOT EXISTS idx ON public.\"Users\" USING btree (lower(email), id) WHERE deleted_at IS NULL",
        ) {
            DdlKind::CreateIndex {
                name,
                table,
                unique,
                concurrently,
                if_not_exists,
                only,
                columns,
            } => {
                assert_eq!(name, Some(Name::bare("idx")));
                assert_eq!(table, Name::new(Some("public"), "Users"));
                assert!(unique && if_not_exists && !concurrently && !only);
                assert_eq!(columns, 2);
            }
            other => panic!("{other:?}"),
        }
    }

    /// A USING that only casts the column to its new type is no USING (knex's `.alter()`);
    /// any other expression, column or type still is.
    #[test]
    fn using_that_casts_the_column_to_the_new_type() {
        let using = |sql: &str| match parsed(sql) {
            DdlKind::AlterTable { ops, .. } => match &ops[0] {
                AlterOp::AlterColumnType { using, .. } => *using,
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        };
        for sql in [
            r#"alter table "orders" alter column "total" type decimal(12, 2) using ("total"::decimal(12, 2))"#,
            "ALTER TABLE orders ALTER COLUMN total TYPE numeric(12,2) USING total::numeric(12, 2)",
            "ALTER TABLE orders ALTER total TYPE text USING CAST(Total AS text)",
            "ALTER TABLE orders ALTER COLUMN total TYPE bigint",
        ] {
            assert!(!using(sql), "{sql}");
        }
        for sql in [
            "ALTER TABLE orders ALTER COLUMN total TYPE numeric(12,2) USING total + 0",
            "ALTER TABLE orders ALTER COLUMN total TYPE numeric(14,2) USING total::numeric(12,2)",
            "ALTER TABLE orders ALTER COLUMN total TYPE numeric(12,2) USING decimal(12,2)::numeric(12,2)",
            r#"ALTER TABLE orders ALTER COLUMN total TYPE text USING "Total"::text"#,
            "ALTER TABLE orders ALTER COLUMN total TYPE text USING other::text",
            "ALTER TABLE orders ALTER COLUMN total TYPE bigint USING (total::int)::bigint",
        ] {
            assert!(using(sql), "{sql}");
        }
    }

    #[test]
    fn alter_table_sub_commands() {
        let kind = parsed(
            "ALTER TABLE ONLY app.Orders ADD COLUMN ext uuid NOT NULL DEFAULT gen_random_uuid(), \
             ADD CONSTRAINT fk FOREIGN KEY (c) REFERENCES customers (id) NOT VALID, \
             ALTER COLUMN total TYPE numeric(12,2), ALTER COLUMN email SET NOT NULL, \
             VALIDATE CONSTRAINT other_fk, DROP COLUMN legacy, RENAME COLUMN a TO b",
        );
        let DdlKind::AlterTable {
            name, only, ops, ..
        } = kind
        else {
            panic!("{kind:?}")
        };
        assert_eq!(name, Name::new(Some("app"), "orders"));
        assert!(only);
        let AlterOp::AddColumn(col) = &ops[0] else {
            panic!("{:?}", ops[0])
        };
        assert_eq!(col.name, "ext");
        assert!(col.not_null);
        assert_eq!(
            col.default.as_ref().map(|d| d.functions.clone()),
            Some(vec!["gen_random_uuid".to_owned()])
        );
        assert_eq!(
            ops[1],
            AlterOp::AddConstraint(AddConstraint {
                name: Some("fk".into()),
                kind: ConstraintKind::ForeignKey {
                    references: Name::bare("customers")
                },
                not_valid: true,
                index: None,
            })
        );
        assert_eq!(
            ops[2],
            AlterOp::AlterColumnType {
                column: "total".into(),
                data_type: "numeric(12,2)".into(),
                using: false
            }
        );
        assert_eq!(
            ops[3],
            AlterOp::SetNotNull {
                column: "email".into()
            }
        );
        assert_eq!(
            ops[4],
            AlterOp::ValidateConstraint {
                name: "other_fk".into()
            }
        );
        assert_eq!(
            ops[5],
            AlterOp::DropColumn {
                name: "legacy".into()
            }
        );
        assert_eq!(
            ops[6],
            AlterOp::RenameColumn {
                from: "a".into(),
                to: "b".into()
            }
        );
    }

    #[test]
    fn add_column_kinds() {
        let col = |sql: &str| match parsed(sql) {
            DdlKind::AlterTable { mut ops, .. } => match ops.remove(0) {
                AlterOp::AddColumn(c) => c,
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        };
        assert!(col("ALTER TABLE t ADD COLUMN id bigserial").serial);
        assert!(col("ALTER TABLE t ADD COLUMN id bigint GENERATED ALWAYS AS IDENTITY").identity);
        assert!(
            col("ALTER TABLE t ADD COLUMN s int GENERATED ALWAYS AS (a * 2) STORED")
                .generated_stored
        );
        let c = col("ALTER TABLE t ADD COLUMN o int REFERENCES owners (id) UNIQUE CHECK (o > 0)");
        assert_eq!(
            c.constraints,
            [
                ConstraintKind::ForeignKey {
                    references: Name::bare("owners")
                },
                ConstraintKind::Unique { using_index: false },
                ConstraintKind::Check
            ]
        );
        assert_eq!(
            col("ALTER TABLE t ADD COLUMN d timestamptz DEFAULT now()")
                .default
                .map(|d| d.functions),
            Some(vec!["now".to_owned()])
        );
        assert_eq!(
            col("ALTER TABLE t ADD COLUMN d int DEFAULT 0")
                .default
                .map(|d| d.functions),
            Some(vec![])
        );
    }

    #[test]
    fn drops_truncate_lock_refresh() {
        assert_eq!(
            parsed("DROP INDEX a, s.b CASCADE"),
            DdlKind::DropIndex {
                names: vec![Name::bare("a"), Name::new(Some("s"), "b")],
                concurrently: false,
                if_exists: false,
                cascade: true
            }
        );
        assert_eq!(
            parsed("DROP TABLE IF EXISTS t"),
            DdlKind::DropTable {
                names: vec![Name::bare("t")],
                cascade: false
            }
        );
        assert_eq!(
            parsed("TRUNCATE t1, t2 CASCADE"),
            DdlKind::Truncate {
                names: vec![Name::bare("t1"), Name::bare("t2")],
                cascade: true
            }
        );
        assert_eq!(
            parsed("LOCK TABLE t IN SHARE MODE"),
            DdlKind::Lock {
                tables: vec![Name::bare("t")],
                mode: LockMode::Share
            }
        );
        assert_eq!(
            parsed("LOCK t"),
            DdlKind::Lock {
                tables: vec![Name::bare("t")],
                mode: LockMode::AccessExclusive
            }
        );
        assert_eq!(
            parsed("REFRESH MATERIALIZED VIEW CONCURRENTLY mv"),
            DdlKind::RefreshMaterializedView {
                name: Name::bare("mv"),
                concurrently: true
            }
        );
        // A materialized view is a new relation, like CREATE TABLE … AS.
        assert_eq!(
            parsed("CREATE MATERIALIZED VIEW s.mv AS SELECT 1"),
            DdlKind::CreateTable {
                name: Name::new(Some("s"), "mv"),
                temporary: false,
                partition_of: None,
                references: Vec::new(),
                if_not_exists: false,
                columns: Vec::new(),
            }
        );
        assert_eq!(
            parsed("CREATE VIEW v AS SELECT 1"),
            DdlKind::Other {
                tag: "CREATE VIEW".into()
            }
        );
        assert_eq!(
            parsed("CREATE OR REPLACE VIEW v AS SELECT 1"),
            DdlKind::Other {
                tag: "CREATE OR REPLACE VIEW".into()
            }
        );
    }

    #[test]
    fn create_table_collects_references_and_partition_parent() {
        match parsed(
            "CREATE TABLE o (id int PRIMARY KEY, c int REFERENCES customers (id), FOREIGN KEY (id) REFERENCES s.other (x))",
        ) {
            DdlKind::CreateTable {
                name,
                references,
                partition_of,
                temporary,
                ..
            } => {
                assert_eq!(name, Name::bare("o"));
                assert_eq!(
                    references,
                    [Name::bare("customers"), Name::new(Some("s"), "other")]
                );
                assert!(partition_of.is_none() && !temporary);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn called_functions_are_found_by_tokens() {
        assert_eq!(
            called_functions("public.gen_random_uuid()"),
            ["gen_random_uuid"]
        );
        assert_eq!(called_functions("nextval('s'::regclass)"), ["nextval"]);
        assert_eq!(called_functions("'now()'"), Vec::<String>::new());
        assert_eq!(called_functions("CURRENT_TIMESTAMP"), Vec::<String>::new());
    }

    /// Runs `understand` on a thread with a tokio worker's default stack (2 MiB), so an
    /// overflow fails the test run instead of passing on the main thread's 8 MiB.
    fn on_worker_stack(sql: String) -> Ddl {
        std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || ddl(&sql))
            .expect("spawn")
            .join()
            .expect("no panic")
    }

    fn unknown(d: &Ddl) -> bool {
        d.kind == DdlKind::Unknown && d.understood == Understood::Unknown
    }

    #[test]
    fn hostile_nesting_does_not_overflow() {
        let deep = format!(
            "CREATE INDEX i ON t ({}x{})",
            "(".repeat(5000),
            ")".repeat(5000)
        );
        assert!(unknown(&on_worker_stack(deep)));
        let deep = format!(
            "CREATE VIEW v AS SELECT {}1{}",
            "(".repeat(100_000),
            ")".repeat(100_000)
        );
        assert!(unknown(&on_worker_stack(deep)));
        let deep = format!(
            "CREATE VIEW v AS SELECT {}1{}",
            "a[".repeat(200),
            "]".repeat(200)
        );
        assert!(unknown(&on_worker_stack(deep)));
    }

    #[test]
    fn long_operator_chains_are_too_complex() {
        let n = 35_000;
        for sql in [
            format!("CREATE VIEW v AS SELECT 1{}", "+1".repeat(n)),
            format!("CREATE VIEW v AS SELECT 'a'{}", "||'a'".repeat(n)),
            format!("CREATE VIEW v AS SELECT true{}", " OR true".repeat(n)),
            format!("CREATE VIEW v AS SELECT 1{}", "::int".repeat(n)),
            format!(
                "CREATE VIEW v AS SELECT 1, 1{}",
                " UNION SELECT 1, 1".repeat(n)
            ),
            format!(
                "ALTER TABLE t ADD COLUMN c int DEFAULT 1{}",
                " IS NULL".repeat(n)
            ),
            // Chains split by parentheses still add up along the path.
            format!(
                "CREATE VIEW v AS SELECT {}1{}",
                "(".repeat(50),
                format!("{})", "+1".repeat(500)).repeat(50)
            ),
        ] {
            assert!(too_complex(
                sql.as_bytes(),
                0,
                sql.len(),
                LexOptions::default()
            ));
            assert!(unknown(&on_worker_stack(sql)));
        }
    }

    #[test]
    fn chains_just_under_the_bound_are_read_safely() {
        // The worst the bound lets through, on a worker-sized stack: parsed, printed (DEFAULT
        // expressions are), dropped.
        let n = MAX_CHAIN - 10;
        for sql in [
            format!("ALTER TABLE t ADD COLUMN c int DEFAULT 1{}", "+1".repeat(n)),
            format!(
                "ALTER TABLE t ADD COLUMN c int DEFAULT 1{}",
                " OR 1".repeat(n)
            ),
            format!("CREATE VIEW v AS SELECT 1{}", " UNION SELECT 1".repeat(n)),
        ] {
            let d = on_worker_stack(sql);
            assert_eq!(d.understood, Understood::Parsed, "{:?}", d.kind);
        }
    }

    #[test]
    fn large_ordinary_ddl_is_not_too_complex() {
        // 1,600 columns (PostgreSQL's maximum), each with a default, a cast and a check: the
        // checks are siblings, not one path.
        let cols: Vec<String> = (0..1600)
            .map(|i| format!("c{i} int NOT NULL DEFAULT 0::int CHECK (c{i} >= 0 AND c{i} < 10)"))
            .collect();
        let sql = format!("CREATE TABLE t ({})", cols.join(", "));
        assert!(!too_complex(
            sql.as_bytes(),
            0,
            sql.len(),
            LexOptions::default()
        ));
        let conds: Vec<String> = (0..500).map(|i| format!("a.c{i} = b.c{i}")).collect();
        let sql = format!(
            "CREATE VIEW v AS SELECT * FROM a JOIN b ON {} WHERE a.x IS NOT NULL",
            conds.join(" AND ")
        );
        assert!(!too_complex(
            sql.as_bytes(),
            0,
            sql.len(),
            LexOptions::default()
        ));
        // Operators inside string literals and comments are not operators.
        let sql = format!(
            "CREATE VIEW v AS SELECT '{}' /* {} */",
            "+".repeat(50_000),
            "+".repeat(50_000)
        );
        assert!(!too_complex(
            sql.as_bytes(),
            0,
            sql.len(),
            LexOptions::default()
        ));
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Any bytes: measured and understood without a panic, and a statement judged too
        /// complex is never understood.
        #[test]
        fn prop_any_bytes(sql in prop::collection::vec(
            prop_oneof![Just(b'('), Just(b')'), Just(b'['), Just(b']'), Just(b'+'), any::<u8>()],
            0..256,
        )) {
            let opts = LexOptions::default();
            let complex = too_complex(&sql, 0, sql.len(), opts);
            let ddl = understand(&sql, 0, sql.len(), opts);
            prop_assert!(!complex || ddl.understood == Understood::Unknown);
        }
    }
}

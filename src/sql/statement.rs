//! ddlgate's own model of a DDL statement: what the rules and the policy look at.
//!
//! Only the SQL layer knows how a statement was understood — by `sqlparser` (`sql::parse`) or,
//! for the PostgreSQL syntax sqlparser rejects, by the lexer-based fallback classifier
//! (`sql::fallback`). Everything downstream sees these types, so a parser upgrade touches the
//! SQL layer only. The model keeps exactly the facts the rules need (which object, which
//! options, which sub-commands), with names folded the way PostgreSQL folds them.

/// One object of a `DROP <kind> … CASCADE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DropObject {
    pub name: Name,
    /// A function's argument list was written (`f(int)`, `f()`): without one, PostgreSQL
    /// requires the name to be unique.
    pub args: bool,
}

/// A possibly schema-qualified object name, folded like PostgreSQL: unquoted identifiers are
/// lower-cased, quoted ones kept exactly.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Name {
    pub schema: Option<String>,
    pub name: String,
}

impl Name {
    pub fn new(schema: Option<&str>, name: &str) -> Name {
        Name {
            schema: schema.map(str::to_owned),
            name: name.to_owned(),
        }
    }

    pub fn bare(name: &str) -> Name {
        Name::new(None, name)
    }
}

impl std::fmt::Display for Name {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.schema {
            Some(s) => write!(f, "{s}.{}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// How the statement was understood.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Understood {
    /// Parsed by sqlparser into a full AST.
    Parsed,
    /// sqlparser rejected it; the fallback classifier recognised it from its tokens.
    Fallback,
    /// Neither could tell what it is. The policy's `unparsed-ddl` finding: fail closed.
    Unknown,
}

/// A DDL statement (or DDL candidate) as the rules see it.
#[derive(Debug, Clone, PartialEq)]
pub struct Ddl {
    pub kind: DdlKind,
    pub understood: Understood,
}

/// REINDEX targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReindexTarget {
    Index,
    Table,
    Schema,
    Database,
    System,
}

/// Explicit lock modes of `LOCK TABLE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LockMode {
    AccessShare,
    RowShare,
    RowExclusive,
    ShareUpdateExclusive,
    Share,
    ShareRowExclusive,
    Exclusive,
    AccessExclusive,
}

impl LockMode {
    /// Conflicts with what ordinary queries take (SELECT, SELECT FOR UPDATE/SHARE, INSERT,
    /// UPDATE, DELETE, MERGE): SHARE and stronger. eugene's definition of a dangerous lock.
    pub fn blocks_traffic(self) -> bool {
        self >= LockMode::Share
    }

    pub fn as_str(self) -> &'static str {
        match self {
            LockMode::AccessShare => "ACCESS SHARE",
            LockMode::RowShare => "ROW SHARE",
            LockMode::RowExclusive => "ROW EXCLUSIVE",
            LockMode::ShareUpdateExclusive => "SHARE UPDATE EXCLUSIVE",
            LockMode::Share => "SHARE",
            LockMode::ShareRowExclusive => "SHARE ROW EXCLUSIVE",
            LockMode::Exclusive => "EXCLUSIVE",
            LockMode::AccessExclusive => "ACCESS EXCLUSIVE",
        }
    }
}

/// A column's DEFAULT expression, as far as the rules care.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefaultExpr {
    /// The expression text as the client wrote it.
    pub text: String,
    /// Names of the functions it calls (lower-cased, unqualified), e.g. `gen_random_uuid`.
    pub functions: Vec<String>,
}

/// Inline constraints of a column definition or table constraints, by kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConstraintKind {
    ForeignKey { references: Name },
    Check,
    Unique { using_index: bool },
    PrimaryKey { using_index: bool },
    Exclusion,
    NotNull,
}

/// One `ADD [CONSTRAINT name] …` of ALTER TABLE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddConstraint {
    pub name: Option<String>,
    pub kind: ConstraintKind,
    pub not_valid: bool,
    /// `… USING INDEX i`: the index (folded, in the table's schema) the constraint takes over.
    pub index: Option<String>,
}

/// One `ADD COLUMN` of ALTER TABLE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddColumn {
    pub name: String,
    /// The type as written, lower-cased (`bigserial`, `uuid`, `varchar(20)`).
    pub data_type: String,
    pub not_null: bool,
    pub default: Option<DefaultExpr>,
    /// `serial`, `bigserial`, `smallserial`.
    pub serial: bool,
    /// `GENERATED … AS IDENTITY`.
    pub identity: bool,
    /// `GENERATED ALWAYS AS (…) STORED`.
    pub generated_stored: bool,
    /// `GENERATED ALWAYS AS (…) VIRTUAL` (PostgreSQL 18).
    pub generated_virtual: bool,
    /// Inline REFERENCES / UNIQUE / PRIMARY KEY / CHECK.
    pub constraints: Vec<ConstraintKind>,
}

/// One sub-command of ALTER TABLE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AlterOp {
    AddColumn(AddColumn),
    DropColumn {
        name: String,
    },
    RenameColumn {
        from: String,
        to: String,
    },
    RenameTable {
        to: String,
    },
    SetSchema,
    AlterColumnType {
        column: String,
        data_type: String,
        using: bool,
    },
    SetNotNull {
        column: String,
    },
    DropNotNull {
        column: String,
    },
    SetDefault {
        column: String,
    },
    DropDefault {
        column: String,
    },
    AddConstraint(AddConstraint),
    ValidateConstraint {
        name: String,
    },
    DropConstraint {
        name: String,
    },
    SetTablespace,
    SetLogged,
    SetUnlogged,
    SetAccessMethod,
    AttachPartition {
        partition: Name,
    },
    DetachPartition {
        partition: Name,
        concurrently: bool,
    },
    EnableTrigger,
    DisableTrigger,
    RowLevelSecurity,
    /// Storage parameters, statistics, owner, replica identity, cluster on, … — sub-commands
    /// the rules do not single out; they still take the ALTER TABLE lock.
    Other(String),
}

/// What a DDL statement is.
#[derive(Debug, Clone, PartialEq)]
pub enum DdlKind {
    CreateIndex {
        name: Option<Name>,
        table: Name,
        unique: bool,
        concurrently: bool,
        if_not_exists: bool,
        /// `ON ONLY parent`: the partitioned-parent form that builds nothing.
        only: bool,
        /// Non-unique columns count (for wide-index warnings).
        columns: usize,
    },
    DropIndex {
        names: Vec<Name>,
        concurrently: bool,
        if_exists: bool,
        cascade: bool,
    },
    Reindex {
        target: ReindexTarget,
        name: Option<Name>,
        concurrently: bool,
    },
    AlterIndex {
        name: Name,
        /// `RENAME`, `SET TABLESPACE`, `ATTACH PARTITION`, `SET (…)`, …
        action: String,
    },
    CreateTable {
        name: Name,
        temporary: bool,
        partition_of: Option<Name>,
        /// Tables referenced by foreign keys in the definition.
        references: Vec<Name>,
        /// `IF NOT EXISTS` was given.
        if_not_exists: bool,
        /// The column definitions, when sqlparser read the statement (empty for `AS query`,
        /// `PARTITION OF`, `OF type`, and statements only the token classifier read). Read by
        /// the opt-in style rules (`ddlgate check --style`).
        columns: Vec<AddColumn>,
    },
    AlterTable {
        name: Name,
        only: bool,
        if_exists: bool,
        ops: Vec<AlterOp>,
    },
    DropTable {
        names: Vec<Name>,
        cascade: bool,
    },
    Truncate {
        names: Vec<Name>,
        cascade: bool,
    },
    Vacuum {
        full: bool,
        tables: Vec<Name>,
    },
    Cluster {
        table: Option<Name>,
    },
    Lock {
        tables: Vec<Name>,
        mode: LockMode,
    },
    RefreshMaterializedView {
        name: Name,
        concurrently: bool,
    },
    AlterTypeAddValue {
        type_name: Name,
        /// The new label (the string literal's content), when read.
        value: Option<String>,
        /// `BEFORE` or `AFTER` places the new label; without them it goes last.
        positioned: bool,
    },
    AlterTypeRenameValue {
        type_name: Name,
    },
    CreateEnum {
        name: Name,
    },
    CreateDomainWithConstraint {
        name: Name,
    },
    AlterDomainAddConstraint {
        name: Name,
        not_valid: bool,
    },
    /// `DO [LANGUAGE l] $$ … $$`.
    Do {
        language: Option<String>,
        body: String,
    },
    CreateFunction {
        name: Name,
        language: Option<String>,
        body: Option<String>,
    },
    DropDatabase,
    /// `DROP OWNED BY role [, ...] [ CASCADE | RESTRICT ]`: drops every object the roles own,
    /// tables included.
    DropOwned,
    /// `DROP <kind> … CASCADE` of any object kind but a table, an index or a database (types,
    /// domains, functions, schemas, extensions, …): PostgreSQL drops every dependent object
    /// with it — columns of that type, whole tables in that schema. `tag` is the command tag,
    /// e.g. `DROP TYPE`. Without CASCADE these stay `Other`.
    DropCascade {
        tag: String,
        /// `IF EXISTS` was given.
        if_exists: bool,
        /// The objects dropped, for the kinds whose dependents ddlgate can ask the server about
        /// (functions, procedures, routines, aggregates, types, domains, schemas, extensions,
        /// views, materialized views, sequences),
        /// when the statement is exactly `DROP <kind> [IF EXISTS] obj [, …] CASCADE`; `None`
        /// otherwise (then nothing is known and the rule assumes the worst).
        objects: Option<Vec<DropObject>>,
    },
    /// `ALTER TYPE name RENAME ATTRIBUTE a TO b`: on a table's row type PostgreSQL renames the
    /// table's column.
    AlterTypeRenameAttribute {
        type_name: Name,
        from: String,
        to: String,
    },
    /// `ALTER SCHEMA name RENAME TO new`.
    RenameSchema {
        name: String,
        to: String,
    },
    /// `ALTER VIEW / MATERIALIZED VIEW name RENAME [ COLUMN a ] TO b`. PostgreSQL accepts both on
    /// any relation, tables included (it renames the table or its column).
    RenameView {
        name: Name,
        materialized: bool,
        /// `RENAME COLUMN from TO …`; `None` for `RENAME TO`.
        column: Option<String>,
        to: String,
    },
    /// `ALTER { SEQUENCE | FUNCTION | PROCEDURE | ROUTINE | AGGREGATE | TYPE | DOMAIN } name …
    /// RENAME TO new`: an object running code refers to by name. `tag` is the command tag
    /// (`ALTER SEQUENCE`), `name` the object as written (a routine's signature is not kept).
    RenameObject {
        tag: String,
        name: Name,
        to: String,
    },
    /// `CREATE [ OR REPLACE ] RULE name AS ON event TO table … DO [ ALSO | INSTEAD ] …`.
    CreateRule {
        name: String,
        /// `SELECT`, `INSERT`, `UPDATE` or `DELETE`.
        event: String,
        table: Name,
        instead: bool,
    },
    /// A statement that runs SQL from a string on another connection (`dblink_exec`, `dblink`,
    /// `dblink_send_query`, …): what that SQL does is invisible to ddlgate. `function` is the
    /// first such function named.
    RemoteSql {
        function: String,
    },
    /// `COPY … FROM PROGRAM` / `COPY … TO PROGRAM`: runs a shell command as the server's OS user.
    CopyProgram {
        /// `TO PROGRAM` (the command reads the data) rather than `FROM PROGRAM`.
        to: bool,
    },
    /// DDL the rules have no concern with (CREATE VIEW, CREATE SEQUENCE, COMMENT, GRANT, …),
    /// identified by its command tag, e.g. `CREATE VIEW`.
    Other {
        tag: String,
    },
    /// Nothing could identify it.
    Unknown,
}

impl DdlKind {
    /// A stable, bounded label for logs and metrics (`create_index`, `alter_table`, …; never
    /// names or SQL).
    pub fn label(&self) -> &'static str {
        match self {
            DdlKind::CreateIndex { .. } => "create_index",
            DdlKind::DropIndex { .. } => "drop_index",
            DdlKind::Reindex { .. } => "reindex",
            DdlKind::AlterIndex { .. } => "alter_index",
            DdlKind::CreateTable { .. } => "create_table",
            DdlKind::AlterTable { .. } => "alter_table",
            DdlKind::DropTable { .. } => "drop_table",
            DdlKind::Truncate { .. } => "truncate",
            DdlKind::Vacuum { .. } => "vacuum",
            DdlKind::Cluster { .. } => "cluster",
            DdlKind::Lock { .. } => "lock",
            DdlKind::RefreshMaterializedView { .. } => "refresh_materialized_view",
            DdlKind::AlterTypeAddValue { .. } => "alter_type_add_value",
            DdlKind::AlterTypeRenameValue { .. } => "alter_type_rename_value",
            DdlKind::CreateEnum { .. } => "create_enum",
            DdlKind::CreateDomainWithConstraint { .. } => "create_domain",
            DdlKind::AlterDomainAddConstraint { .. } => "alter_domain",
            DdlKind::Do { .. } => "do",
            DdlKind::CreateFunction { .. } => "create_function",
            DdlKind::DropDatabase => "drop_database",
            DdlKind::DropOwned => "drop_owned",
            DdlKind::DropCascade { .. } => "drop_cascade",
            DdlKind::AlterTypeRenameAttribute { .. } => "alter_type_rename_attribute",
            DdlKind::RenameSchema { .. } => "rename_schema",
            DdlKind::RenameView { .. } => "rename_view",
            DdlKind::RenameObject { .. } => "rename_object",
            DdlKind::CreateRule { .. } => "create_rule",
            DdlKind::RemoteSql { .. } => "remote_sql",
            DdlKind::CopyProgram { .. } => "copy_program",
            DdlKind::Other { .. } => "other",
            DdlKind::Unknown => "unknown",
        }
    }
}

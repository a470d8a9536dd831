//! Reading the statement forms the recipes split (`ALTER TABLE` heads, table and column
//! constraints, column definitions, `CREATE INDEX`, `REFRESH MATERIALIZED VIEW`) off the token
//! cursor of [`crate::sql::reader`], keeping the client's text where a step copies it.

use super::RecipeError;
use crate::sql::lexer::TokenKind;
use crate::sql::naming::check_columns;
use crate::sql::reader::Stmt;
use crate::sql::statement::Name;

/// The parts of `UNIQUE …` / `PRIMARY KEY …` a concurrent index and `USING INDEX` need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct IndexSpec {
    pub(super) primary: bool,
    /// Key columns, folded.
    pub(super) columns: Vec<String>,
    /// `INCLUDE (…)` columns, folded.
    pub(super) include: Vec<String>,
    /// `NULLS DISTINCT` / `NULLS NOT DISTINCT`, as keywords.
    pub(super) nulls: Option<&'static str>,
    /// `WITH (…)` storage parameters, the client's text including the parentheses.
    pub(super) with: Option<String>,
    /// `USING INDEX TABLESPACE ts`: the tablespace, folded.
    pub(super) tablespace: Option<String>,
    /// `DEFERRABLE` / `INITIALLY …` attributes, the client's text.
    pub(super) attributes: Option<String>,
}

/// `ALTER TABLE [IF EXISTS] [ONLY] name [*]` and where the action starts.
pub(super) struct AlterHead {
    pub(super) table: Name,
    pub(super) only: bool,
    pub(super) action: usize,
}

/// A table constraint of `ADD [CONSTRAINT n] …`.
pub(super) struct TableConstraint {
    pub(super) name: Option<String>,
    /// From the constraint keyword to the end of the statement, the client's text.
    pub(super) body: String,
    pub(super) spec: ConstraintSpec,
}

pub(super) enum ConstraintSpec {
    ForeignKey {
        columns: Vec<String>,
    },
    /// `columns`: the columns the expression references, if ddlgate can tell (for naming).
    Check {
        columns: Option<Vec<String>>,
    },
    Index(IndexSpec),
}

/// `ADD [COLUMN] [IF NOT EXISTS] c type …` with its recipe-handled constraints taken out.
pub(super) struct ColumnDef {
    pub(super) name: String,
    /// The type and every option the recipe leaves on the column (DEFAULT, NOT NULL,
    /// COLLATE, GENERATED …), the client's text.
    pub(super) rest: String,
    pub(super) constraints: Vec<ColumnConstraint>,
}

pub(super) struct ColumnConstraint {
    pub(super) name: Option<String>,
    /// From the constraint keyword to the end of its attributes, the client's text.
    pub(super) body: String,
    pub(super) spec: ColumnConstraintSpec,
}

pub(super) enum ColumnConstraintSpec {
    References,
    Check { columns: Option<Vec<String>> },
    Index(IndexSpec),
}

/// `CREATE [UNIQUE] INDEX … [name] ON table <tail>`.
pub(super) struct CreateIndex {
    pub(super) name: Option<String>,
    pub(super) table: Name,
    pub(super) tail: String,
    /// Token ranges of the index elements inside the column parentheses.
    pub(super) elements: Vec<(usize, usize)>,
    /// `INCLUDE (…)` columns, folded: PostgreSQL names the index after them too.
    pub(super) include: Vec<String>,
}

impl Stmt<'_> {
    /// `ALTER TABLE [IF EXISTS] [ONLY] name [*]`.
    pub(super) fn alter_head(&self) -> Result<AlterHead, RecipeError> {
        let bad = RecipeError::Unreadable("the ALTER TABLE head");
        if !(self.word(0, "ALTER") && self.word(1, "TABLE")) {
            return Err(bad);
        }
        let mut i = 2;
        if self.word(i, "IF") && self.word(i + 1, "EXISTS") {
            i += 2;
        }
        let only = self.word(i, "ONLY");
        if only {
            i += 1;
        }
        let (table, mut j) = self.relation(i).ok_or(bad)?;
        if self.is_op(j, "*") {
            j += 1;
        }
        Ok(AlterHead {
            table,
            only,
            action: j,
        })
    }

    /// Constraint attributes at depth 0 in tokens `from..to`: NOT VALID / NOT ENFORCED make
    /// the split pointless.
    fn check_attributes(&self, from: usize, to: usize) -> Result<(), RecipeError> {
        let mut depth = 0usize;
        for i in from..to.min(self.toks.len()) {
            match self.kind(i) {
                Some(TokenKind::LParen) => depth += 1,
                Some(TokenKind::RParen) => depth = depth.saturating_sub(1),
                _ if depth == 0 && self.word(i, "NOT") => {
                    if self.word(i + 1, "VALID") {
                        return Err(RecipeError::AlreadySafe("NOT VALID"));
                    }
                    if self.word(i + 1, "ENFORCED") {
                        return Err(RecipeError::AlreadySafe(
                            "NOT ENFORCED (such a constraint is never validated)",
                        ));
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// `ADD [CONSTRAINT n] {FOREIGN KEY | CHECK | UNIQUE | PRIMARY KEY} …` at `action`.
    pub(super) fn table_constraint(&self, action: usize) -> Result<TableConstraint, RecipeError> {
        let bad = RecipeError::Unreadable("the constraint");
        if !self.word(action, "ADD") {
            return Err(bad);
        }
        let mut i = action + 1;
        let mut name = None;
        if self.word(i, "CONSTRAINT") {
            name = Some(
                self.ident(i + 1)
                    .ok_or(RecipeError::Unreadable("the constraint name"))?,
            );
            i += 2;
        }
        let body = self.text(i, self.last())?;
        let spec = if self.word(i, "FOREIGN") && self.word(i + 1, "KEY") {
            let (columns, close) = self.column_list(i + 2).ok_or(bad)?;
            if !self.word(close + 1, "REFERENCES") {
                return Err(RecipeError::Unreadable("the REFERENCES clause"));
            }
            self.check_attributes(close + 1, self.toks.len())?;
            ConstraintSpec::ForeignKey { columns }
        } else if self.word(i, "CHECK") {
            let close = self.close_paren(i + 1).ok_or(bad)?;
            self.check_attributes(close + 1, self.toks.len())?;
            ConstraintSpec::Check {
                columns: check_columns(self, i + 1, close),
            }
        } else if self.word(i, "UNIQUE") || (self.word(i, "PRIMARY") && self.word(i + 1, "KEY")) {
            let primary = self.word(i, "PRIMARY");
            let mut j = if primary { i + 2 } else { i + 1 };
            if self.word(j, "USING") && self.word(j + 1, "INDEX") {
                return Err(RecipeError::AlreadySafe("ADD CONSTRAINT … USING INDEX"));
            }
            let nulls = if primary {
                None
            } else {
                self.nulls_clause(&mut j)
            };
            let (columns, close) = self.column_list(j).ok_or(RecipeError::Unsupported(
                "a UNIQUE / PRIMARY KEY over expressions",
            ))?;
            let mut spec = self.index_tail(close + 1, self.toks.len(), primary)?;
            spec.columns = columns;
            spec.nulls = nulls;
            ConstraintSpec::Index(spec)
        } else {
            return Err(bad);
        };
        Ok(TableConstraint { name, body, spec })
    }

    /// `NULLS [NOT] DISTINCT` at `*j` (PostgreSQL 15+), advancing past it.
    fn nulls_clause(&self, j: &mut usize) -> Option<&'static str> {
        if !self.word(*j, "NULLS") {
            return None;
        }
        if self.word(*j + 1, "DISTINCT") {
            *j += 2;
            Some("NULLS DISTINCT")
        } else if self.word(*j + 1, "NOT") && self.word(*j + 2, "DISTINCT") {
            *j += 3;
            Some("NULLS NOT DISTINCT")
        } else {
            None
        }
    }

    /// `[INCLUDE (…)] [WITH (…)] [USING INDEX TABLESPACE ts] [attributes]` in `from..to`.
    fn index_tail(&self, from: usize, to: usize, primary: bool) -> Result<IndexSpec, RecipeError> {
        let mut spec = IndexSpec {
            primary,
            columns: Vec::new(),
            include: Vec::new(),
            nulls: None,
            with: None,
            tablespace: None,
            attributes: None,
        };
        let mut i = from;
        if self.word(i, "INCLUDE") {
            let (include, close) = self
                .column_list(i + 1)
                .ok_or(RecipeError::Unreadable("the INCLUDE list"))?;
            spec.include = include;
            i = close + 1;
        }
        if self.word(i, "WITH") && self.kind(i + 1) == Some(TokenKind::LParen) {
            let close = self
                .close_paren(i + 1)
                .ok_or(RecipeError::Unreadable("the WITH options"))?;
            spec.with = Some(self.text(i + 1, close)?);
            i = close + 1;
        }
        if self.word(i, "USING") && self.word(i + 1, "INDEX") && self.word(i + 2, "TABLESPACE") {
            spec.tablespace = Some(
                self.ident(i + 3)
                    .ok_or(RecipeError::Unreadable("the tablespace"))?,
            );
            i += 4;
        }
        if i < to {
            let mut j = i;
            while j < to {
                let attr = self.word(j, "DEFERRABLE")
                    || (self.word(j, "NOT") && self.word(j + 1, "DEFERRABLE"))
                    || self.word(j, "INITIALLY")
                    || self.word(j, "DEFERRED")
                    || self.word(j, "IMMEDIATE");
                if !attr {
                    return Err(RecipeError::Unsupported(
                        "this clause of a UNIQUE / PRIMARY KEY constraint",
                    ));
                }
                j += 1;
            }
            spec.attributes = Some(self.text(i, to - 1)?);
        }
        Ok(spec)
    }

    /// `ALTER [COLUMN] c SET NOT NULL` at `action`.
    pub(super) fn expect_set_not_null(&self, action: usize) -> Result<(), RecipeError> {
        let mut i = action + 1;
        if self.word(i, "COLUMN") {
            i += 1;
        }
        let ok = self.word(action, "ALTER")
            && self.ident(i).is_some()
            && self.word(i + 1, "SET")
            && self.word(i + 2, "NOT")
            && self.word(i + 3, "NULL")
            && i + 3 == self.last();
        ok.then_some(())
            .ok_or(RecipeError::Unreadable("ALTER COLUMN … SET NOT NULL"))
    }

    /// Is `i` the first token of a new item in a column definition (depth 0)?
    fn starts_column_item(&self, i: usize) -> bool {
        let after = |kw: &str| i > 0 && self.word(i - 1, kw);
        if self.word(i, "NOT") {
            return self.word(i + 1, "NULL");
        }
        if self.word(i, "NULL") {
            // `ON DELETE SET NULL` belongs to REFERENCES; `NOT NULL` started at NOT.
            return !after("SET") && !after("NOT");
        }
        if self.word(i, "DEFAULT") {
            // `ON DELETE SET DEFAULT`, `GENERATED BY DEFAULT`.
            return !after("SET") && !after("BY");
        }
        // Reserved words can only be what they are; the unreserved ones could be a function
        // name inside a DEFAULT expression.
        let reserved = [
            "CONSTRAINT",
            "CHECK",
            "UNIQUE",
            "PRIMARY",
            "REFERENCES",
            "COLLATE",
        ];
        let unreserved = ["GENERATED", "COMPRESSION", "STORAGE"];
        reserved.iter().any(|kw| self.word(i, kw))
            || (unreserved.iter().any(|kw| self.word(i, kw))
                && self.kind(i + 1) != Some(TokenKind::LParen))
    }

    /// `ADD [COLUMN] [IF NOT EXISTS] c type [options and constraints]` at `action`.
    pub(super) fn column_definition(&self, action: usize) -> Result<ColumnDef, RecipeError> {
        let bad = RecipeError::Unreadable("the column definition");
        if !self.word(action, "ADD") {
            return Err(bad);
        }
        let mut i = action + 1;
        if self.word(i, "COLUMN") {
            i += 1;
        }
        if self.word(i, "IF") && self.word(i + 1, "NOT") && self.word(i + 2, "EXISTS") {
            i += 3;
        }
        let name = self
            .ident(i)
            .ok_or(RecipeError::Unreadable("the column name"))?;
        let type_start = i + 1;
        // Items: the type first, then one item per option/constraint at depth 0.
        let mut bounds = vec![type_start];
        let mut depth = 0usize;
        for j in type_start..self.toks.len() {
            match self.kind(j) {
                Some(TokenKind::LParen) => depth += 1,
                Some(TokenKind::RParen) => depth = depth.saturating_sub(1),
                _ if depth == 0 && j > type_start && self.starts_column_item(j) => {
                    // `CONSTRAINT n KEYWORD`: the keyword is part of the CONSTRAINT item.
                    let named = bounds
                        .last()
                        .is_some_and(|&b| self.word(b, "CONSTRAINT") && j == b + 2);
                    if !named {
                        bounds.push(j);
                    }
                }
                _ => {}
            }
        }
        if bounds.len() == 1 && type_start > self.last() {
            return Err(bad);
        }
        let mut kept = Vec::new();
        let mut constraints = Vec::new();
        for (k, &b) in bounds.iter().enumerate() {
            let last = bounds.get(k + 1).map_or(self.last(), |&n| n - 1);
            if last < b {
                return Err(bad);
            }
            if k == 0 {
                kept.push(self.text(b, last)?);
                continue;
            }
            let (cname, kw) = if self.word(b, "CONSTRAINT") {
                (
                    Some(
                        self.ident(b + 1)
                            .ok_or(RecipeError::Unreadable("the constraint name"))?,
                    ),
                    b + 2,
                )
            } else {
                (None, b)
            };
            let spec = if self.word(kw, "REFERENCES") {
                self.check_attributes(kw, last + 1)?;
                Some(ColumnConstraintSpec::References)
            } else if self.word(kw, "CHECK") {
                let close = self.close_paren(kw + 1).ok_or(bad.clone())?;
                if close > last {
                    return Err(bad);
                }
                self.check_attributes(close + 1, last + 1)?;
                Some(ColumnConstraintSpec::Check {
                    columns: check_columns(self, kw + 1, close),
                })
            } else if self.word(kw, "UNIQUE")
                || (self.word(kw, "PRIMARY") && self.word(kw + 1, "KEY"))
            {
                let primary = self.word(kw, "PRIMARY");
                let mut j = if primary { kw + 2 } else { kw + 1 };
                let nulls = if primary {
                    None
                } else {
                    self.nulls_clause(&mut j)
                };
                let mut spec = self.index_tail(j, last + 1, primary)?;
                spec.nulls = nulls;
                Some(ColumnConstraintSpec::Index(spec))
            } else {
                None
            };
            match spec {
                Some(spec) => constraints.push(ColumnConstraint {
                    name: cname,
                    body: self.text(kw, last)?,
                    spec,
                }),
                None => kept.push(self.text(b, last)?),
            }
        }
        Ok(ColumnDef {
            name,
            rest: kept.join(" "),
            constraints,
        })
    }

    /// Where `CONCURRENTLY` goes in `REFRESH MATERIALIZED VIEW name`: after `VIEW`.
    pub(super) fn refresh_insertion_point(&self) -> Result<usize, RecipeError> {
        if self.word(0, "REFRESH")
            && self.word(1, "MATERIALIZED")
            && self.word(2, "VIEW")
            && let Some(t) = self.tok(2)
        {
            return Ok(t.end);
        }
        Err(RecipeError::Unreadable("REFRESH MATERIALIZED VIEW"))
    }

    /// `CREATE [UNIQUE] INDEX [CONCURRENTLY] [[IF NOT EXISTS] name] ON table <tail>`.
    pub(super) fn create_index(&self) -> Result<CreateIndex, RecipeError> {
        let bad = RecipeError::Unreadable("the CREATE INDEX statement");
        if !self.word(0, "CREATE") {
            return Err(bad);
        }
        let mut i = 1;
        if self.word(i, "UNIQUE") {
            i += 1;
        }
        if !self.word(i, "INDEX") {
            return Err(bad);
        }
        i += 1;
        if self.word(i, "CONCURRENTLY") {
            i += 1;
        }
        if self.word(i, "IF") && self.word(i + 1, "NOT") && self.word(i + 2, "EXISTS") {
            i += 3;
        }
        let mut name = None;
        if !self.word(i, "ON") {
            name = Some(self.ident(i).ok_or(bad.clone())?);
            i += 1;
        }
        if !self.word(i, "ON") {
            return Err(bad);
        }
        i += 1;
        if self.word(i, "ONLY") {
            return Err(RecipeError::AlreadySafe("CREATE INDEX … ON ONLY"));
        }
        let (table, j) = self.relation(i).ok_or(bad.clone())?;
        if self.is_op(j, "*") {
            return Err(RecipeError::Unsupported("CREATE INDEX … ON table*"));
        }
        let tail = self.text(j, self.last())?;
        let mut open = j;
        if self.word(open, "USING") {
            open += 2;
        }
        let close = self.close_paren(open).ok_or(bad)?;
        let mut elements = Vec::new();
        let mut from = open + 1;
        let mut depth = 0usize;
        for k in open + 1..=close {
            match self.kind(k) {
                Some(TokenKind::LParen) => depth += 1,
                Some(TokenKind::RParen) if depth > 0 => depth -= 1,
                Some(TokenKind::Comma | TokenKind::RParen) if depth == 0 => {
                    if k == from {
                        return Err(RecipeError::Unreadable("the index columns"));
                    }
                    elements.push((from, k));
                    from = k + 1;
                }
                _ => {}
            }
        }
        let include = if self.word(close + 1, "INCLUDE") {
            self.column_list(close + 2)
                .ok_or(RecipeError::Unreadable("the INCLUDE list"))?
                .0
        } else {
            Vec::new()
        };
        Ok(CreateIndex {
            name,
            table,
            tail,
            elements,
            include,
        })
    }
}

//! The built-in semi-join rewrite: a DISTINCT over a one-to-many join becomes EXISTS.
//! (Contract stub; the implementation replaces the body of [`propose`].)

use crate::rules::catalog::Snapshot;

/// Which shape was rewritten.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Form {
    /// `SELECT DISTINCT … FROM parent JOIN child …`
    Distinct,
    /// `SELECT DISTINCT ON (key) … FROM parent JOIN child …`
    DistinctOn,
    /// Django's `.distinct().count()`: `SELECT COUNT(*) FROM (SELECT DISTINCT …) subquery`
    CountOverDistinct,
    /// `SELECT COUNT(DISTINCT parent.pk) FROM parent JOIN child …`
    CountDistinct,
}

/// A proven rewrite of one normalized statement.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Proposal {
    /// The rewritten statement over the same `$1..$n` slots as the normalized input.
    pub sql: String,
    pub form: Form,
    /// The DISTINCT (or the DISTINCT inside the count) was dropped: the select list holds a NOT
    /// NULL unique key of the parent.
    pub distinct_dropped: bool,
    /// Bindings (aliases or table names) moved into EXISTS subqueries, in FROM order.
    pub moved: Vec<String>,
}

/// Why a statement is left alone; the text says which precondition failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NotProvable(pub String);

/// Proposes the semi-join rewrite of `normalized` (a statement's normalized text, constants as
/// `$1..$n`) with the facts of `schema`, or says which precondition is not proven.
///
/// # Errors
/// [`NotProvable`] naming the precondition that failed.
pub fn propose(normalized: &str, schema: &Snapshot) -> Result<Proposal, NotProvable> {
    let _ = (normalized, schema);
    Err(NotProvable("not implemented yet".into()))
}

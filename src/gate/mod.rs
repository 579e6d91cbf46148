//! The regression gate: `pgshape snapshot` saves a running pgshape's per-shape statistics to a
//! file, `pgshape diff` compares two such files (a run of the test suite on the main branch and
//! on a change) shape by shape and fails when one got slower, returns more rows per call, or is
//! newly hit by a rule.
//!
//! The comparison is per fingerprint: fingerprints are stable across runs, versions and
//! instances, and a test suite's shapes are the same from run to run, so a shape that appears,
//! vanishes or changes is a change in the code under test. Percentiles of a shape that ran as
//! several (database, user) entries come from their summed histograms, not from averaging
//! percentiles.
//!
//! - `snapshot.rs`: the file, and taking it from the admin API.
//! - `diff.rs`: the comparison and its thresholds (tested on hand-built snapshots).
//! - `report.rs`: the comparison as a table, JSON, or Markdown for a pull-request comment.

mod diff;
mod report;
mod snapshot;

pub use diff::{Change, Figures, Report, Status, Thresholds, diff};
pub use report::{render_markdown, render_table};
pub use snapshot::{FORMAT_VERSION, Snapshot};

/// Why a snapshot could not be taken, read or written.
#[derive(Debug, thiserror::Error)]
pub enum GateError {
    #[error(transparent)]
    Client(#[from] crate::admin::client::ClientError),
    #[error("{path}: {error}")]
    Io { path: String, error: std::io::Error },
    #[error("{path} is not a pgshape snapshot: {why}")]
    Format { path: String, why: String },
}

#[cfg(test)]
mod tests;

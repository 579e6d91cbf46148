//! The snapshot file: every row of the admin API's listing with its histogram, as JSON, plus
//! when and where it was taken. The rows are the API's own, so a snapshot also reads as a
//! record of the run.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::GateError;
use crate::admin::client::AdminClient;
use crate::admin::rows::{self, Row};

/// Written as `pgshape_snapshot`; a reader refuses other versions rather than misreading them.
pub const FORMAT_VERSION: u32 = 1;

/// A saved run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Snapshot {
    pub pgshape_snapshot: u32,
    /// RFC 3339, UTC.
    pub taken_at: String,
    /// The admin API it was read from.
    pub admin: String,
    /// Cumulative rows since the statistics started or were reset, with histograms.
    pub shapes: Vec<Row>,
}

impl Snapshot {
    /// Reads every row of the admin API at `client` (of `database` only, when given).
    ///
    /// # Errors
    /// When the admin API cannot be read.
    pub fn take(
        client: &AdminClient,
        admin: &str,
        database: Option<&str>,
    ) -> Result<Snapshot, GateError> {
        let mut shapes = rows::list_all(client)?;
        if let Some(db) = database {
            shapes.retain(|r| r.database == db);
        }
        Ok(Snapshot {
            pgshape_snapshot: FORMAT_VERSION,
            taken_at: crate::stats::rfc3339(std::time::SystemTime::now()),
            admin: admin.to_owned(),
            shapes,
        })
    }

    /// Reads a snapshot file.
    ///
    /// # Errors
    /// An unreadable file, or one that is not a snapshot of this version.
    pub fn read(path: &Path) -> Result<Snapshot, GateError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|error| GateError::Io {
            path: shown.clone(),
            error,
        })?;
        let format = |why: String| GateError::Format {
            path: shown.clone(),
            why,
        };
        let value: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| format(e.to_string()))?;
        match value
            .get("pgshape_snapshot")
            .and_then(serde_json::Value::as_u64)
        {
            Some(v) if v == u64::from(FORMAT_VERSION) => {}
            Some(v) => {
                return Err(format(format!(
                    "version {v}; this pgshape reads version {FORMAT_VERSION}"
                )));
            }
            None => {
                return Err(format(
                    "no \"pgshape_snapshot\" field (write one with `pgshape snapshot -o FILE`)"
                        .into(),
                ));
            }
        }
        serde_json::from_value(value).map_err(|e| format(e.to_string()))
    }

    /// The snapshot as pretty JSON.
    pub fn to_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).unwrap_or_default();
        text.push('\n');
        text
    }

    /// Writes [`Snapshot::to_json`] to `path`.
    ///
    /// # Errors
    /// When the file cannot be written.
    pub fn write(&self, path: &Path) -> Result<(), GateError> {
        std::fs::write(path, self.to_json()).map_err(|error| GateError::Io {
            path: path.display().to_string(),
            error,
        })
    }
}

//! Finding the PostgreSQL server binaries and running them as the right system user.
//!
//! The tests need a real server, never a mock, and they must not silently skip when it is
//! missing: a missing server is a broken test machine, so [`PgBin::find`] panics with the command
//! that installs one.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

pub use pgshape::demo::pgbin::POSTGRES_OS_USER;

/// A PostgreSQL installation's `bin` directory.
#[derive(Debug, Clone)]
pub struct PgBin {
    pub bindir: PathBuf,
}

impl PgBin {
    /// The installation to use, looked up once per test binary, where the demo looks too
    /// ([`pgshape::demo::pgbin::find_bindir`]).
    pub fn get() -> &'static PgBin {
        static BIN: OnceLock<PgBin> = OnceLock::new();
        BIN.get_or_init(PgBin::find)
    }

    fn find() -> PgBin {
        match pgshape::demo::pgbin::find_bindir() {
            Some(bindir) => PgBin { bindir },
            None => panic!(
                "PostgreSQL server binaries (initdb, pg_ctl) not found on PATH, via `pg_config \
                 --bindir`, or in /usr/lib/postgresql/*/bin. The integration tests need a real \
                 server: install it with `apt-get install -y postgresql postgresql-contrib` \
                 (or set PGSHAPE_PG_BINDIR to the directory holding initdb)."
            ),
        }
    }

    /// Path of a program from this installation, falling back to `PATH` for client tools that
    /// a packaging put elsewhere.
    pub fn tool(&self, name: &str) -> PathBuf {
        let path = self.bindir.join(name);
        if path.is_file() {
            path
        } else {
            PathBuf::from(name)
        }
    }

    /// Server major version, from `pg_ctl --version` ("pg_ctl (PostgreSQL) 15.18").
    pub fn major_version(&self) -> u32 {
        let out = Command::new(self.tool("pg_ctl"))
            .arg("--version")
            .output()
            .expect("run pg_ctl --version");
        let text = String::from_utf8_lossy(&out.stdout);
        text.split_whitespace()
            .last()
            .and_then(|v| v.split('.').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("cannot parse `pg_ctl --version` output: {text}"))
    }
}

pub use pgshape::demo::pgbin::{running_as_root, server_command};

/// Hands a directory tree to the postgres system user (only when running as root).
pub fn chown_to_postgres(path: &Path) {
    if !running_as_root() {
        return;
    }
    let status = Command::new("chown")
        .arg("-R")
        .arg(format!("{POSTGRES_OS_USER}:"))
        .arg(path)
        .status()
        .expect("run chown");
    assert!(
        status.success(),
        "chown -R {POSTGRES_OS_USER}: {} failed; when the tests run as root the `{POSTGRES_OS_USER}` \
         system user must exist (it comes with Debian's postgresql package)",
        path.display()
    );
}

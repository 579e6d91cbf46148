//! Finding the PostgreSQL server binaries and running them as the right system user.
//!
//! The tests need a real server, never a mock, and they must not silently skip when it is
//! missing: a missing server is a broken test machine, so [`PgBin::find`] panics with the command
//! that installs one.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The system user that owns the throw-away clusters when the tests run as root.
pub const POSTGRES_OS_USER: &str = "postgres";

/// A PostgreSQL installation's `bin` directory.
#[derive(Debug, Clone)]
pub struct PgBin {
    pub bindir: PathBuf,
}

impl PgBin {
    /// The installation to use, looked up once per test binary.
    ///
    /// Order: `$PGSHAPE_PG_BINDIR`, the first `PATH` entry holding `initdb` and `pg_ctl`,
    /// `pg_config --bindir`, then the highest `/usr/lib/postgresql/<version>/bin` (where Debian's
    /// `postgresql` package puts them, off `PATH`).
    pub fn get() -> &'static PgBin {
        static BIN: OnceLock<PgBin> = OnceLock::new();
        BIN.get_or_init(PgBin::find)
    }

    fn find() -> PgBin {
        let has_server = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
        let mut candidates: Vec<PathBuf> = Vec::new();
        if let Some(dir) = std::env::var_os("PGSHAPE_PG_BINDIR") {
            candidates.push(PathBuf::from(dir));
        }
        if let Some(path) = std::env::var_os("PATH") {
            candidates.extend(std::env::split_paths(&path));
        }
        if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
            && out.status.success()
        {
            candidates.push(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
        }
        candidates.extend(debian_bindirs());
        match candidates.into_iter().find(|dir| has_server(dir)) {
            Some(dir) => PgBin {
                // /usr/local/bin/initdb may be a symlink into /usr/lib/postgresql/N/bin; the
                // canonical directory also holds `postgres`, psql and pgbench of the same version.
                bindir: dir
                    .join("initdb")
                    .canonicalize()
                    .ok()
                    .and_then(|p| p.parent().map(Path::to_path_buf))
                    .unwrap_or(dir),
            },
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

/// `/usr/lib/postgresql/<major>/bin`, highest major first.
fn debian_bindirs() -> Vec<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .collect();
    found.sort_by_key(|(version, _)| std::cmp::Reverse(*version));
    found.into_iter().map(|(_, dir)| dir).collect()
}

/// Whether this process runs as root. `initdb` and `postgres` refuse to run as root, so then
/// the harness runs them as [`POSTGRES_OS_USER`] through `runuser`. Asked of `id -u` because the
/// crate forbids `unsafe` and has no libc binding.
pub fn running_as_root() -> bool {
    static ROOT: OnceLock<bool> = OnceLock::new();
    *ROOT.get_or_init(|| {
        Command::new("id")
            .arg("-u")
            .output()
            .map(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
            .unwrap_or(false)
    })
}

/// A command for a server program (`initdb`, `pg_ctl`): run directly, or as root through
/// `runuser -u postgres --` since PostgreSQL refuses to run its server as root.
pub fn server_command(program: &Path) -> Command {
    if running_as_root() {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", POSTGRES_OS_USER, "--"]).arg(program);
        cmd
    } else {
        Command::new(program)
    }
}

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

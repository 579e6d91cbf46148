//! Finding the PostgreSQL server binaries and running them as a user they accept: shared by the
//! demo's throw-away server and the integration-test harness, so both look in the same places.
//!
//! PostgreSQL refuses to run as root, so as root the server tools run as the `postgres`
//! system user through `runuser` (Debian's `postgresql` package creates that user).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The system user that owns throw-away clusters when pgshape runs as root.
pub const POSTGRES_OS_USER: &str = "postgres";

/// The `bin` directory holding `initdb` and `pg_ctl`: `$PGSHAPE_PG_BINDIR`, the first `PATH`
/// entry with both, `pg_config --bindir`, then the highest `/usr/lib/postgresql/<major>/bin`
/// (where Debian puts them, off `PATH`). A symlinked `initdb` resolves to its real directory,
/// which also holds `postgres`, `psql` and `pgbench` of the same version.
pub fn find_bindir() -> Option<PathBuf> {
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
    let dir = candidates.into_iter().find(|dir| has_server(dir))?;
    Some(
        dir.join("initdb")
            .canonicalize()
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf))
            .unwrap_or(dir),
    )
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

/// Whether this process runs as root; asked of `id -u` because the crate forbids `unsafe` and
/// has no libc binding.
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

/// A command for a server program (`initdb`, `pg_ctl`, `postgres`): run directly, or as root
/// through `runuser -u postgres --`.
pub fn server_command(program: &Path) -> Command {
    if running_as_root() {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", POSTGRES_OS_USER, "--"]).arg(program);
        cmd
    } else {
        Command::new(program)
    }
}

//! A throw-away PostgreSQL for the demo: `initdb` into a temp dir, `pg_ctl start` on a free
//! port with its socket in that dir, stopped and removed on drop.
//!
//! As root, the server tools run as the `postgres` system user (see [`super::pgbin`]) and the
//! directory is handed to that user.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::pgbin::{POSTGRES_OS_USER, find_bindir, running_as_root, server_command};

/// Why the demo server could not be started.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(
        "PostgreSQL server binaries (initdb, pg_ctl) not found on PATH, via pg_config or in \
         /usr/lib/postgresql/*/bin; install them with `apt-get install -y postgresql`"
    )]
    NotInstalled,
    #[error("{step} failed: {detail}")]
    Step { step: &'static str, detail: String },
    #[error("I/O error preparing the server: {0}")]
    Io(#[from] std::io::Error),
}

/// A running throw-away server.
pub struct Cluster {
    bindir: PathBuf,
    dir: PathBuf,
    port: u16,
    version: String,
}

fn free_port() -> Result<u16, ClusterError> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl Cluster {
    /// Creates and starts a server with a `trust` superuser named `user`.
    ///
    /// # Errors
    /// Missing binaries, or initdb/pg_ctl failing (their output is included).
    pub fn start(user: &str) -> Result<Cluster, ClusterError> {
        let bindir = find_bindir().ok_or(ClusterError::NotInstalled)?;
        let dir = std::env::temp_dir().join(format!("pgshape-demo-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let mut cluster = Cluster {
            bindir,
            dir,
            port: free_port()?,
            version: String::new(),
        };
        if running_as_root() {
            cluster.run(
                "chown",
                Command::new("chown")
                    .args(["-R", POSTGRES_OS_USER])
                    .arg(&cluster.dir),
            )?;
        }
        let data = cluster.dir.join("data");
        let mut initdb = cluster.tool("initdb");
        initdb
            .arg("-D")
            .arg(&data)
            .args(["-U", user, "--auth=trust", "--no-sync", "-E", "UTF8"]);
        cluster.run("initdb", &mut initdb)?;
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off",
            cluster.port,
            cluster.dir.display()
        );
        let mut start = cluster.tool("pg_ctl");
        start
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(cluster.dir.join("server.log"))
            .args(["-o", &options, "-w", "start"]);
        cluster.run("pg_ctl start", &mut start)?;
        let version = cluster.tool("postgres").arg("--version").output()?;
        cluster.version = String::from_utf8_lossy(&version.stdout).trim().to_owned();
        Ok(cluster)
    }

    fn tool(&self, name: &str) -> Command {
        server_command(&self.bindir.join(name))
    }

    fn run(&self, step: &'static str, cmd: &mut Command) -> Result<(), ClusterError> {
        let out = cmd.stdin(Stdio::null()).output()?;
        if out.status.success() {
            return Ok(());
        }
        Err(ClusterError::Step {
            step,
            detail: format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `postgres (PostgreSQL) 15.x`.
    pub fn version(&self) -> &str {
        &self.version
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let mut stop = self.tool("pg_ctl");
        stop.arg("-D")
            .arg(self.dir.join("data"))
            .args(["-m", "fast", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let _ = stop.status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

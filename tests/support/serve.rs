//! The `pgshape serve` binary as a child process, for tests of what only the real binary does
//! (signals, the command line, the environment, its own fds and memory); [`Proxy`] is one with
//! an admin listener and leak checks (fds, connection gauges).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{ConnParams, PgCluster, http, psql_query};

/// A free local address to listen on.
pub fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// `pgshape serve`, killed on drop.
pub struct Serve {
    pub child: Child,
    /// Its stderr (`RUST_LOG=info` unless `env` says otherwise).
    pub log: PathBuf,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Serve {
    /// `pgshape serve` in front of `cluster` with the rules in `rules`, plus `args` and `env`,
    /// logging to `log`. Returns at once: wait for what the test needs (e.g. [`Self::wait_log`]).
    pub fn spawn(
        cluster: &PgCluster,
        rules: &Path,
        args: &[&str],
        env: &[(&str, &str)],
        log: PathBuf,
    ) -> Serve {
        let child = Command::new(env!("CARGO_BIN_EXE_pgshape"))
            .arg("serve")
            .args(["--upstream", &cluster.addr().to_string()])
            .arg("--rules")
            .arg(rules)
            .args(args)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Serve { child, log }
    }

    /// Sends SIGHUP (reload the rules).
    pub fn hup(&self) {
        let status = Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Sends SIGTERM (graceful shutdown).
    pub fn term(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Open file descriptors of the process (`/proc/<pid>/fd`).
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .expect("the proxy is running")
            .count()
    }

    /// Resident memory in KiB (`VmRSS` of `/proc/<pid>/status`).
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("the proxy is running");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/<pid>/status")
    }

    /// The log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The log once it contains `needle` (10 s at most).
    pub fn wait_log(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let log = self.log();
            if log.contains(needle) {
                return log;
            }
            assert!(
                Instant::now() < deadline,
                "no {needle:?} in the log:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Sum of every series of `name` in pgshape's /metrics (with `labels` contained, if given).
pub fn metric(admin: SocketAddr, name: &str, labels: &str) -> f64 {
    let (status, text) = http(admin, "GET", "/metrics");
    assert_eq!(status, 200, "{text}");
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .filter(|(series, _)| {
            (*series == name || series.starts_with(&format!("{name}{{"))) && series.contains(labels)
        })
        .map(|(_, v)| v.parse::<f64>().expect("a metric value"))
        .sum()
}

/// Polls `what` (up to 20 s) until it holds; the proxy closes sessions asynchronously.
#[track_caller]
pub fn eventually(what: &str, mut check: impl FnMut() -> Result<(), String>) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match check() {
            Ok(()) => return,
            Err(state) if Instant::now() >= deadline => panic!("{what}: {state}"),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// `pgshape serve` with an admin listener in front of `cluster`, using the shipped rules copied to a
/// temp dir (so a test may touch them).
pub struct Proxy {
    pub serve: Serve,
    pub listen: SocketAddr,
    pub admin: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Proxy {
    pub fn start(cluster: &PgCluster, args: &[&str]) -> Proxy {
        let dir = tempfile::tempdir().unwrap();
        let rules = dir.path().join("rules");
        std::fs::create_dir(&rules).unwrap();
        for entry in std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("rules")).unwrap()
        {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                std::fs::copy(&path, rules.join(path.file_name().unwrap())).unwrap();
            }
        }
        let (listen, admin) = (free_addr(), free_addr());
        let mut all = vec![
            "--listen".to_owned(),
            listen.to_string(),
            "--admin".to_owned(),
            admin.to_string(),
            "--workers".to_owned(),
            "2".to_owned(),
        ];
        all.extend(args.iter().map(|a| (*a).to_owned()));
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        let serve = Serve::spawn(cluster, &rules, &all, &[], dir.path().join("pgshape.log"));
        serve.wait_log("admin listener ready");
        serve.wait_log("pgshape listening");
        Proxy {
            serve,
            listen,
            admin,
            _dir: dir,
        }
    }

    pub fn rules_dir(&self) -> std::path::PathBuf {
        self._dir.path().join("rules")
    }

    pub fn metric(&self, name: &str) -> f64 {
        metric(self.admin, name, "")
    }

    /// Fds after the lazily opened ones exist: one session through the proxy and one scrape.
    pub fn warm_baseline(&self, db: &ConnParams) -> usize {
        psql_query(&db.via(self.listen), "SELECT 1");
        self.metric("pgshape_statements_total");
        self.wait_sessions_closed();
        self.serve.open_fds()
    }

    #[track_caller]
    pub fn wait_sessions_closed(&self) {
        eventually("every session task ends", || {
            let (c, s) = (
                self.metric("pgshape_client_connections_active"),
                self.metric("pgshape_server_connections_active"),
            );
            if c == 0.0 && s == 0.0 {
                Ok(())
            } else {
                Err(format!(
                    "{c} client and {s} server connections still active"
                ))
            }
        });
    }

    #[track_caller]
    pub fn assert_no_leaks(&self, baseline_fds: usize) {
        self.wait_sessions_closed();
        eventually("the proxy's fds return to their baseline", || {
            // Not equal: the baseline may include an admin connection still closing.
            let fds = self.serve.open_fds();
            if fds <= baseline_fds {
                Ok(())
            } else {
                Err(format!("{fds} open fds, baseline {baseline_fds}"))
            }
        });
    }
}

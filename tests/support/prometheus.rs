//! A real Prometheus server for the tests that check what a scraper makes of pgshape: it
//! scrapes one target every second as job `pgshape`, with exemplar storage on, optionally
//! evaluating rule files every second; or it runs a given prometheus.yml (the one in docker/).
//! Killed on drop.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::util::http_request;

pub struct PrometheusServer {
    child: Child,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl PrometheusServer {
    /// Scrapes `target`'s `/metrics`.
    pub fn start(target: SocketAddr) -> PrometheusServer {
        Self::start_with_rules(target, &[])
    }

    /// Scrapes `target` and evaluates `rule_files` every second.
    pub fn start_with_rules(target: SocketAddr, rule_files: &[PathBuf]) -> PrometheusServer {
        let rules: String = rule_files
            .iter()
            .map(|f| format!("  - '{}'\n", f.display()))
            .collect();
        Self::start_with_config(
            &format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
                 rule_files:\n{rules}\
                 scrape_configs:\n  - job_name: pgshape\n    static_configs:\n      - targets: ['{target}']\n"
            )
            .replace("rule_files:\nscrape", "scrape"),
        )
    }

    /// Runs with `config` as its prometheus.yml (relative paths in it resolve against a
    /// temporary directory: give rule files absolute paths).
    pub fn start_with_config(config_text: &str) -> PrometheusServer {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(&config, config_text).unwrap();
        // A free port for its web listener (a tiny race with other processes, as with any).
        let addr = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--enable-feature=exemplar-storage")
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("log")).unwrap())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run prometheus ({e}): install it with \
                     `apt-get install -y prometheus` (.ci/run does)"
                )
            });
        PrometheusServer { child, addr, dir }
    }

    /// `GET path` on the HTTP API; `None` while it is not listening yet.
    pub fn get(&self, path: &str) -> Option<Value> {
        TcpStream::connect(self.addr).ok()?;
        let r = http_request(self.addr, "GET", path, &[]);
        serde_json::from_str(&r.body).ok()
    }

    /// An instant query; `None` while Prometheus is not ready. The answer's `status` is
    /// `success` or `error` (with `error` saying why).
    pub fn query(&self, promql: &str) -> Option<Value> {
        self.get(&format!(
            "/api/v1/query?query={}",
            super::util::percent_encode(promql)
        ))
    }

    /// Polls `probe` every 250 ms until it gives a value, up to `timeout`; panics with the
    /// targets and the server's log otherwise.
    #[track_caller]
    pub fn wait_for<T>(
        &self,
        timeout: Duration,
        what: &str,
        probe: impl Fn(&Self) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(v) = probe(self) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "Prometheus: no {what} within {timeout:?}; targets: {:?}\nlog:\n{}",
                self.get("/api/v1/targets"),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }
}

impl Drop for PrometheusServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

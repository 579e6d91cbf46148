//! pgshape in front of a test cluster, with every statement event recorded so tests can assert
//! "exactly one event with this SQL, these rows and this tag" for what a client did.

use std::net::SocketAddr;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use pgshape::config::Config;
use pgshape::event::{Protocol, StatementEvent, StatementObserver};
use pgshape::proxy::Proxy;
use pgshape::rules::RuleEngine;

use super::client::ConnParams;
use super::cluster::PgCluster;

/// An owned copy of one [`StatementEvent`].
#[derive(Debug, Clone)]
pub struct RecordedEvent {
    pub sql: String,
    pub rows: u64,
    pub command: String,
    pub sqlstate: Option<String>,
    pub protocol: Protocol,
    pub in_transaction: bool,
    pub database: String,
    pub user: String,
    pub application_name: String,
    pub duration: Duration,
}

/// A [`StatementObserver`] that keeps every event, in arrival order.
#[derive(Debug, Default)]
pub struct EventLog {
    events: Mutex<Vec<RecordedEvent>>,
    arrived: Condvar,
}

impl StatementObserver for EventLog {
    fn on_statement(&self, event: &StatementEvent<'_>) {
        let recorded = RecordedEvent {
            // Tests compare against what they sent, so invalid UTF-8 shows up as a mismatch.
            sql: String::from_utf8_lossy(&event.statement.sql).into_owned(),
            rows: event.rows,
            command: event.command.to_owned(),
            sqlstate: event.sqlstate_str().map(str::to_owned),
            protocol: event.protocol,
            in_transaction: event.in_transaction,
            database: event.session.database.clone(),
            user: event.session.user.clone(),
            application_name: event.session.application_name.clone(),
            duration: event.duration,
        };
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(recorded);
        self.arrived.notify_all();
    }
}

impl EventLog {
    /// Everything recorded so far.
    pub fn events(&self) -> Vec<RecordedEvent> {
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn len(&self) -> usize {
        self.events.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn clear(&self) {
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// Events whose SQL contains `needle`.
    pub fn matching(&self, needle: &str) -> Vec<RecordedEvent> {
        self.events()
            .into_iter()
            .filter(|e| e.sql.contains(needle))
            .collect()
    }

    /// Events of one database (tests share nothing else, but a proxy may be shared).
    pub fn in_database(&self, database: &str) -> Vec<RecordedEvent> {
        self.events()
            .into_iter()
            .filter(|e| e.database == database)
            .collect()
    }

    /// Waits until `pred` holds for the recorded events, up to `timeout`; panics with the events
    /// seen otherwise. Events are published when the server's reply passes through, which can be
    /// a moment after the client already has its answer.
    #[track_caller]
    pub fn wait_until(
        &self,
        timeout: Duration,
        what: &str,
        pred: impl Fn(&[RecordedEvent]) -> bool,
    ) -> Vec<RecordedEvent> {
        let deadline = Instant::now() + timeout;
        let mut events = self.events.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if pred(&events) {
                return events.clone();
            }
            let now = Instant::now();
            if now >= deadline {
                panic!(
                    "timed out after {timeout:?} waiting for {what}; {} events:\n{:#?}",
                    events.len(),
                    *events
                );
            }
            events = self
                .arrived
                .wait_timeout(events, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Waits for at least `n` events in total.
    #[track_caller]
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Vec<RecordedEvent> {
        self.wait_until(timeout, &format!("{n} events"), |events| events.len() >= n)
    }

    /// Waits for at least `n` events whose SQL contains `needle`, and returns those.
    #[track_caller]
    pub fn wait_for_matching(
        &self,
        needle: &str,
        n: usize,
        timeout: Duration,
    ) -> Vec<RecordedEvent> {
        self.wait_until(
            timeout,
            &format!("{n} events matching {needle:?}"),
            |events| events.iter().filter(|e| e.sql.contains(needle)).count() >= n,
        );
        self.matching(needle)
    }

    /// Waits until no new event arrived for `quiet` (to assert that nothing more comes).
    pub fn settle(&self, quiet: Duration) -> Vec<RecordedEvent> {
        let mut seen = self.len();
        loop {
            std::thread::sleep(quiet);
            let now = self.len();
            if now == seen {
                return self.events();
            }
            seen = now;
        }
    }
}

/// A pgshape proxy on an ephemeral port in front of a cluster, recording events.
/// Shut down (blocking) on drop.
pub struct ProxyUnderTest {
    proxy: Option<Proxy>,
    pub events: Arc<EventLog>,
    upstream: SocketAddr,
}

impl ProxyUnderTest {
    /// Starts pgshape in front of `cluster` with test defaults (listen on port 0, no admin).
    pub fn start(cluster: &PgCluster) -> ProxyUnderTest {
        Self::start_with(cluster, |_| {})
    }

    /// As [`ProxyUnderTest::start`], letting the test adjust the configuration first.
    pub fn start_with(cluster: &PgCluster, adjust: impl FnOnce(&mut Config)) -> ProxyUnderTest {
        Self::start_gated(cluster, adjust, false)
    }

    /// As [`ProxyUnderTest::start`], with the shipped rules in their shipped configuration
    /// consulted before every statement, as `pgshape serve` does by default: what a client sees
    /// through it must be what it sees directly.
    pub fn start_with_shipped_rules(cluster: &PgCluster) -> ProxyUnderTest {
        Self::start_gated(cluster, |_| {}, true)
    }

    fn start_gated(
        cluster: &PgCluster,
        adjust: impl FnOnce(&mut Config),
        shipped_rules: bool,
    ) -> ProxyUnderTest {
        let mut config = Config {
            listen: "127.0.0.1:0".into(),
            upstream: cluster.addr().to_string(),
            admin: None,
            // Two workers even on one core, so cross-worker paths (cancel) are exercised.
            workers: 2,
            shutdown_grace_ms: 2_000,
            ..Config::default()
        };
        adjust(&mut config);
        let events = Arc::new(EventLog::default());
        let observer: Arc<dyn StatementObserver> = events.clone();
        let mut builder = Proxy::builder(config.clone()).observers(Arc::from(vec![observer]));
        if shipped_rules {
            let rules = Arc::new(RuleEngine::new(config.rules).expect("the shipped rules load"));
            builder = builder.gate(Arc::new(rules));
        }
        let proxy = builder
            .start()
            .unwrap_or_else(|e| panic!("pgshape failed to start: {e}"));
        ProxyUnderTest {
            proxy: Some(proxy),
            events,
            upstream: cluster.addr(),
        }
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.proxy
            .as_ref()
            .map(Proxy::local_addr)
            .expect("proxy is running until dropped")
    }

    /// The cluster address it relays to.
    pub fn upstream(&self) -> SocketAddr {
        self.upstream
    }

    /// `conn` re-pointed at the proxy.
    pub fn route(&self, conn: &ConnParams) -> ConnParams {
        conn.via(self.addr())
    }

    pub fn proxy(&self) -> &Proxy {
        self.proxy.as_ref().expect("proxy is running until dropped")
    }

    /// Stops the proxy now (what drop does), e.g. to test shutdown behaviour.
    pub fn shutdown(&mut self) {
        if let Some(proxy) = self.proxy.take() {
            proxy.shutdown();
        }
    }
}

impl Drop for ProxyUnderTest {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Settings for a whole pgshape (`App`) in front of `cluster`: proxy and admin API on free
/// ports, one worker.
pub fn app_config(cluster: &PgCluster) -> Config {
    Config {
        listen: "127.0.0.1:0".into(),
        upstream: cluster.addr().to_string(),
        admin: Some("127.0.0.1:0".into()),
        workers: 1,
        ..Config::default()
    }
}

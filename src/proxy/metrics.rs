//! Process-level proxy metrics: connections, bytes, frames, statements, upstream failures.
//!
//! Sessions update them once per read batch (not per frame) so that two cores do not bounce a
//! shared cache line for every DataRow. The admin server encodes them with the rest of the
//! registry it is handed.

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};

/// Counters and gauges for the proxy layer.
#[derive(Debug, Clone)]
pub struct ProxyMetrics {
    pub client_connections_active: IntGauge,
    pub client_connections_total: IntCounter,
    pub client_connections_refused: IntCounter,
    pub server_connections_active: IntGauge,
    pub server_connections_total: IntCounter,
    pub server_connections_reused: IntCounter,
    pub server_connections_idle: IntGauge,
    pub upstream_connect_errors: IntCounter,
    pub protocol_errors: IntCounterVec,
    pub bytes: IntCounterVec,
    pub frames: IntCounterVec,
    pub statements: IntCounter,
    pub cancel_requests: IntCounter,
    /// Clients that disconnected while the server still worked on their statements.
    pub client_disconnects_mid_statement: IntCounter,
    /// Clients closed by `client_login_timeout` (`reason="login"`) or `idle_client_timeout`
    /// (`reason="idle"`).
    pub client_timeouts: IntCounterVec,
    pub(crate) bytes_client_to_server: IntCounter,
    pub(crate) bytes_server_to_client: IntCounter,
    pub(crate) frames_client_to_server: IntCounter,
    pub(crate) frames_server_to_client: IntCounter,
}

fn opts(name: &str, help: &str) -> Opts {
    Opts::new(name, help).namespace("pgshape")
}

impl Default for ProxyMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl ProxyMetrics {
    pub fn new() -> Self {
        // Metric construction only fails on invalid names, which are constants here.
        let counter = |name: &str, help: &str| {
            IntCounter::with_opts(opts(name, help)).unwrap_or_else(|e| panic!("{name}: {e}"))
        };
        let gauge = |name: &str, help: &str| {
            IntGauge::with_opts(opts(name, help)).unwrap_or_else(|e| panic!("{name}: {e}"))
        };
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            IntCounterVec::new(opts(name, help), labels).unwrap_or_else(|e| panic!("{name}: {e}"))
        };
        let bytes = counter_vec(
            "proxy_bytes_total",
            "Bytes relayed, by direction.",
            &["direction"],
        );
        let frames = counter_vec(
            "proxy_frames_total",
            "Protocol messages relayed, by direction.",
            &["direction"],
        );
        ProxyMetrics {
            client_connections_active: gauge(
                "client_connections_active",
                "Client connections open now.",
            ),
            client_connections_total: counter(
                "client_connections_total",
                "Client connections accepted.",
            ),
            client_connections_refused: counter(
                "client_connections_refused_total",
                "Client connections refused because max_client_connections was reached.",
            ),
            server_connections_active: gauge(
                "server_connections_active",
                "Upstream server connections open now.",
            ),
            server_connections_total: counter(
                "server_connections_total",
                "Upstream server connections opened.",
            ),
            server_connections_reused: counter(
                "server_connections_reused_total",
                "Client sessions served by a kept server connection (reuse_server_connections).",
            ),
            server_connections_idle: gauge(
                "server_connections_idle",
                "Server connections kept idle for reuse.",
            ),
            upstream_connect_errors: counter(
                "upstream_connect_errors_total",
                "Failed attempts to connect to the upstream server.",
            ),
            protocol_errors: counter_vec(
                "protocol_errors_total",
                "Malformed or oversized protocol messages, by the side that sent them.",
                &["side"],
            ),
            bytes_client_to_server: bytes.with_label_values(&["client_to_server"]),
            bytes_server_to_client: bytes.with_label_values(&["server_to_client"]),
            frames_client_to_server: frames.with_label_values(&["client_to_server"]),
            frames_server_to_client: frames.with_label_values(&["server_to_client"]),
            bytes,
            frames,
            statements: counter("statements_total", "Statements finished (all sessions)."),
            cancel_requests: counter(
                "cancel_requests_total",
                "Cancel requests forwarded to the server.",
            ),
            client_disconnects_mid_statement: counter(
                "client_disconnects_mid_statement_total",
                "Clients that disconnected while the server still worked on their statements.",
            ),
            client_timeouts: counter_vec(
                "client_timeouts_total",
                "Clients closed by client_login_timeout (login) or idle_client_timeout (idle).",
                &["reason"],
            ),
        }
    }

    /// Adds every metric to `registry`.
    ///
    /// # Errors
    /// When a metric of the same name is already registered.
    pub fn register(&self, registry: &Registry) -> prometheus::Result<()> {
        registry.register(Box::new(self.client_connections_active.clone()))?;
        registry.register(Box::new(self.client_connections_total.clone()))?;
        registry.register(Box::new(self.client_connections_refused.clone()))?;
        registry.register(Box::new(self.server_connections_active.clone()))?;
        registry.register(Box::new(self.server_connections_total.clone()))?;
        registry.register(Box::new(self.server_connections_reused.clone()))?;
        registry.register(Box::new(self.server_connections_idle.clone()))?;
        registry.register(Box::new(self.upstream_connect_errors.clone()))?;
        // Both sides exported at 0 from the start: `increase()` sees the first error only if a
        // sample before it exists.
        for side in ["client", "server"] {
            self.protocol_errors.with_label_values(&[side]);
        }
        registry.register(Box::new(self.protocol_errors.clone()))?;
        registry.register(Box::new(self.bytes.clone()))?;
        registry.register(Box::new(self.frames.clone()))?;
        registry.register(Box::new(self.statements.clone()))?;
        registry.register(Box::new(self.cancel_requests.clone()))?;
        registry.register(Box::new(self.client_disconnects_mid_statement.clone()))?;
        registry.register(Box::new(self.client_timeouts.clone()))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus::{Encoder, TextEncoder};

    #[test]
    fn registers_and_encodes() {
        let m = ProxyMetrics::new();
        let registry = Registry::new();
        m.register(&registry).unwrap();
        m.bytes_client_to_server.inc_by(42);
        m.client_connections_active.inc();
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&registry.gather(), &mut out)
            .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("pgshape_proxy_bytes_total{direction=\"client_to_server\"} 42"));
        assert!(text.contains("pgshape_client_connections_active 1"));
    }
}

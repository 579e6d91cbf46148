//! TCP keepalive on both legs of a session. A peer that vanished without a FIN (power loss, a
//! NAT or firewall that dropped the flow) otherwise leaves the session, its server connection
//! and its backend open until the kernel's two-hour default notices, or forever on a socket
//! that never writes. Socket options go through socket2 because tokio exposes only nodelay.

use std::time::Duration;

use socket2::{SockRef, TcpKeepalive};

use crate::config::Config;

/// The keepalive settings of a proxy; `None` when they are off.
#[derive(Debug, Clone, Copy)]
pub struct Keepalive {
    idle: Duration,
    interval: Duration,
    count: u32,
}

impl Keepalive {
    pub fn from_config(config: &Config) -> Option<Keepalive> {
        config.tcp_keepalive.then(|| Keepalive {
            // The kernel refuses 0; a configured 0 means "as soon as possible".
            idle: Duration::from_secs(config.tcp_keepalive_idle_s.max(1)),
            interval: Duration::from_secs(config.tcp_keepalive_interval_s.max(1)),
            count: config.tcp_keepalive_count.max(1),
        })
    }

    /// Switches keepalive on for `socket`. A failure only loses the early detection of dead
    /// peers, so it is logged, not fatal.
    pub fn apply(&self, socket: &tokio::net::TcpStream) {
        let params = TcpKeepalive::new()
            .with_time(self.idle)
            .with_interval(self.interval)
            .with_retries(self.count);
        if let Err(error) = SockRef::from(socket).set_tcp_keepalive(&params) {
            tracing::debug!(%error, "cannot set TCP keepalive");
        }
    }
}

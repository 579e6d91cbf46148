//! Assembles a running pgshape from a [`Config`]: statistics, slow log, rules, the proxy and the
//! admin HTTP server, all sharing one Prometheus registry. `main.rs` and the end-to-end tests
//! both start pgshape through here, so what is tested is what runs.

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

use prometheus::Registry;
use tokio::sync::oneshot;

use crate::admin::{self, AdminState};
use crate::config::{Config, ConfigError};
use crate::event::{Observers, StatementObserver};
use crate::proxy::{Proxy, ProxyError, ProxyMetrics};
use crate::stats::{SlowLog, Stats};

/// Errors starting pgshape.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Proxy(#[from] ProxyError),
    #[error("cannot listen on admin address {addr}: {source}")]
    AdminBind {
        addr: String,
        source: std::io::Error,
    },
    #[error("cannot start the admin server: {0}")]
    AdminRuntime(std::io::Error),
    #[error("metrics registration: {0}")]
    Metrics(#[from] prometheus::Error),
}

/// A running pgshape.
pub struct App {
    proxy: Proxy,
    admin: Option<AdminServer>,
    stats: Option<Arc<Stats>>,
    registry: Registry,
}

struct AdminServer {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    thread: JoinHandle<()>,
}

impl App {
    /// Starts everything `config` asks for.
    ///
    /// # Errors
    /// Invalid settings, or a listener that cannot be bound.
    pub fn start(config: Config) -> Result<App, AppError> {
        config.stats.validate()?;
        let registry = Registry::new();
        let metrics = ProxyMetrics::new();
        metrics.register(&registry)?;

        let mut observers: Vec<Arc<dyn StatementObserver>> = Vec::new();
        let stats = config
            .stats
            .enabled
            .then(|| Arc::new(Stats::new(config.stats.clone())));
        if let Some(stats) = &stats {
            stats.register(&registry)?;
            observers.push(stats.clone());
        }
        if let Some(slow) = SlowLog::new(config.log_min_duration(), &config.stats) {
            observers.push(Arc::new(slow));
        }
        let observers: Observers = Arc::from(observers);

        let admin = match &config.admin {
            Some(addr) => Some(start_admin(
                addr,
                AdminState {
                    stats: stats.clone(),
                    registry: registry.clone(),
                },
            )?),
            None => None,
        };
        let proxy = Proxy::builder(config)
            .observers(observers)
            .metrics(metrics)
            .start()?;
        Ok(App {
            proxy,
            admin,
            stats,
            registry,
        })
    }

    /// Where clients connect.
    pub fn proxy_addr(&self) -> SocketAddr {
        self.proxy.local_addr()
    }

    /// Where the admin HTTP server listens, when enabled.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().map(|a| a.addr)
    }

    pub fn stats(&self) -> Option<&Arc<Stats>> {
        self.stats.as_ref()
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Graceful stop: the proxy drains (see [`Proxy::shutdown`]), then the admin server stops.
    pub fn shutdown(self) {
        self.proxy.shutdown();
        if let Some(admin) = self.admin {
            let _ = admin.stop.send(());
            let _ = admin.thread.join();
        }
    }
}

fn start_admin(addr: &str, state: AdminState) -> Result<AdminServer, AppError> {
    let listener = std::net::TcpListener::bind(addr).map_err(|source| AppError::AdminBind {
        addr: addr.to_owned(),
        source,
    })?;
    listener
        .set_nonblocking(true)
        .map_err(AppError::AdminRuntime)?;
    let local = listener.local_addr().map_err(AppError::AdminRuntime)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(AppError::AdminRuntime)?;
    let (stop, stopped) = oneshot::channel::<()>();
    let app = admin::router(state);
    let thread = std::thread::Builder::new()
        .name("pgshape-admin".into())
        .spawn(move || {
            runtime.block_on(async move {
                let listener = match tokio::net::TcpListener::from_std(listener) {
                    Ok(l) => l,
                    Err(error) => {
                        tracing::error!(%error, "cannot register the admin listener");
                        return;
                    }
                };
                let shutdown = async {
                    let _ = stopped.await;
                };
                if let Err(error) = admin::serve(listener, app, shutdown).await {
                    tracing::error!(%error, "admin server failed");
                }
            });
        })
        .map_err(AppError::AdminRuntime)?;
    Ok(AdminServer {
        addr: local,
        stop,
        thread,
    })
}

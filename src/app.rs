//! Assembles a running pgshape from a [`Config`]: statistics, slow log, rules, the proxy and the
//! admin HTTP server, all sharing one Prometheus registry. `main.rs` and the end-to-end tests
//! both start pgshape through here, so what is tested is what runs.
//!
//! Threads: the proxy has its own (see [`crate::proxy`]); everything else that needs a runtime
//! (the admin server, the catalog refresher) shares one background thread, so a slow scrape or
//! catalog query never runs on a core that relays traffic.

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use axum::routing::post;
use prometheus::Registry;
use tokio::sync::oneshot;

use crate::admin::{self, AdminState};
use crate::config::{Config, ConfigError};
use crate::event::{Observers, StatementGate, StatementObserver};
use crate::plans::Planner;
use crate::proxy::upstream::UpstreamProbe;
use crate::proxy::{Proxy, ProxyError, ProxyMetrics};
use crate::rules::catalog::CatalogError;
use crate::rules::{CatalogOracle, RuleEngine, RuleLoadError, RuleMetrics};
use crate::stats::{SlowLog, Stats};

/// Errors starting pgshape.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Proxy(#[from] ProxyError),
    #[error(transparent)]
    Rules(#[from] RuleLoadError),
    #[error("invalid schema_dsn: {0}")]
    SchemaDsn(#[from] CatalogError),
    #[error("cannot listen on admin address {addr}: {source}")]
    AdminBind {
        addr: String,
        source: std::io::Error,
    },
    #[error(
        "admin endpoints that reset statistics and reload rules would listen on {addr} without \
         admin_token: set admin_token (PGSHAPE_ADMIN_TOKEN), listen on loopback (admin_write \
         for the POST endpoints), or pass --admin-insecure (PGSHAPE_ADMIN_INSECURE=true)"
    )]
    AdminInsecure { addr: SocketAddr },
    #[error("cannot start the background thread: {0}")]
    Background(std::io::Error),
    #[error("metrics registration: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error(transparent)]
    Tracing(#[from] crate::otel::export::ExportError),
}

/// A running pgshape.
pub struct App {
    proxy: Proxy,
    probe: Arc<UpstreamProbe>,
    admin_addr: Option<SocketAddr>,
    admin_write_addr: Option<SocketAddr>,
    background: Background,
    stats: Option<Arc<Stats>>,
    rules: Arc<RuleEngine>,
    registry: Registry,
    spans: Option<crate::otel::export::SpanExport>,
    planner: Option<Arc<Planner>>,
}

struct Background {
    stop: oneshot::Sender<()>,
    thread: JoinHandle<()>,
}

impl App {
    /// Starts everything `config` asks for.
    ///
    /// # Errors
    /// Invalid settings or rule files, or a listener that cannot be bound.
    pub fn start(config: Config) -> Result<App, AppError> {
        config.stats.validate()?;
        config.tracing.validate()?;
        let registry = Registry::new();
        let metrics = ProxyMetrics::new();
        metrics.register(&registry)?;
        // Which version runs where, for a fleet: join on it or alert on a mix.
        let build_info = prometheus::IntGaugeVec::new(
            prometheus::Opts::new("pgshape_build_info", "The running pgshape (always 1)."),
            &["version"],
        )?;
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        registry.register(Box::new(build_info))?;

        let catalog = match &config.rules.schema_dsn {
            Some(dsn) => Some(Arc::new(CatalogOracle::new(
                dsn,
                Duration::from_secs(config.rules.schema_refresh_secs.max(1)),
            )?)),
            None => None,
        };
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
            observers.push(Arc::new(
                slow.with_analysis_budget(config.rules.analysis_budget()),
            ));
        }
        let planner = config.plans.enabled.then(|| {
            let mut plans = config.plans.clone();
            plans.slow_ms = plans.slow_ms.or_else(|| {
                config
                    .log_min_duration()
                    .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            });
            Arc::new(Planner::new(
                plans,
                catalog.clone(),
                config.stats.log_parameters,
            ))
        });
        if let Some(planner) = &planner {
            planner.store().register(&registry)?;
            // Without the monitoring connection nothing can be explained: keep no texts.
            if catalog.is_some() {
                observers.push(planner.clone());
            }
        }

        let engine = RuleEngine::new(config.rules.clone())?;
        let rule_metrics = RuleMetrics::register(&registry, engine.hit_stats())?;
        let mut engine = engine.with_metrics(rule_metrics);
        if let Some(catalog) = &catalog {
            engine = engine.with_oracle(catalog.clone());
        }
        let rules = Arc::new(engine);
        if let Some(stats) = &stats {
            // A reload checks hot-patch templates against the shapes seen so far.
            let stats = stats.clone();
            rules.set_known_statements(Arc::new(move |fp| stats.normalized(fp)));
        }
        crate::rewrite::metrics::register(&registry, rules.rewriter().counts())?;
        if config.tracing.enabled() && !config.inspect {
            tracing::warn!("tracing configured but inspection off: no statement spans");
        }
        let spans = match config.tracing.enabled() && config.inspect {
            true => {
                let (observer, export) = start_span_export(&config, &rules, &registry)?;
                observers.push(Arc::new(observer));
                Some(export)
            }
            false => None,
        };
        let observers: Observers = Arc::from(observers);

        let admin_listener = bind_admin(config.admin.as_deref())?;
        // With `admin_write` the state-changing endpoints move to a listener of their own.
        let write_listener = match config.admin {
            Some(_) => bind_admin(config.admin_write.as_deref())?,
            None => None,
        };
        let admin_addr = local_addr(admin_listener.as_ref())?;
        let admin_write_addr = local_addr(write_listener.as_ref())?;
        let token = config.admin_token.as_ref().map(|t| t.expose().to_owned());
        if let Some(addr) = admin_write_addr.or(admin_addr)
            && !addr.ip().is_loopback()
            && token.is_none()
        {
            if !config.admin_insecure {
                return Err(AppError::AdminInsecure { addr });
            }
            tracing::warn!(
                %addr,
                "admin_insecure: state-changing admin endpoints on a non-loopback address \
                 without admin_token; whoever reaches it can reset the statistics and reload \
                 the rules"
            );
        }
        let connect_timeout = config.connect_timeout();

        let inspect = config.inspect;
        if !inspect {
            tracing::warn!(
                "inspection off: statements are relayed, not fingerprinted, counted or checked against rules"
            );
        }
        let mut builder = Proxy::builder(config)
            .metrics(metrics)
            .fingerprinting(inspect);
        if inspect {
            let gate: Arc<dyn StatementGate> = Arc::new(rules.clone());
            builder = builder.observers(observers).gate(gate);
        }
        let proxy = builder.start()?;
        // /readyz connects the way sessions do, with the proxy's own upstream settings.
        let probe = Arc::new(UpstreamProbe::new(
            proxy.upstream().clone(),
            connect_timeout,
        ));
        let router = admin_listener.is_some().then(|| {
            let reload_engine = rules.clone();
            let rules_of = rules.clone();
            let rewrite_of = rules.rewriter().clone();
            let router = admin::router(AdminState {
                stats: stats.clone(),
                registry: registry.clone(),
                rules_of: Some(Arc::new(move |fp| rules_of.rules_for_fingerprint(fp))),
                rewrite_of: Some(Arc::new(move |fp| rewrite_of.explain(fp))),
            })
            .merge(crate::rules::api::router(rules.clone()))
            .merge(admin::ready::router(probe.clone()))
            .merge(
                planner
                    .clone()
                    .map(crate::plans::api::router)
                    .unwrap_or_default(),
            )
            // The documented short form of /api/rules/reload.
            .route(
                "/api/reload",
                post(move || {
                    let engine = reload_engine.clone();
                    async move { reload_response(&engine) }
                }),
            );
            admin::protect_writes(router, token)
        });
        let mut listeners = Vec::new();
        match (admin_listener, write_listener, router) {
            (Some(reads), Some(writes), Some(router)) => {
                listeners.push((reads, admin::read_only(router.clone())));
                listeners.push((writes, router));
            }
            (Some(both), None, Some(router)) => listeners.push((both, router)),
            _ => {}
        }
        let background = match start_background(
            listeners,
            catalog,
            rules.rewriter().clone(),
            stats.clone(),
            planner.clone(),
        ) {
            Ok(background) => background,
            Err(error) => {
                proxy.shutdown();
                return Err(error);
            }
        };
        Ok(App {
            proxy,
            probe,
            admin_addr,
            admin_write_addr,
            background,
            stats,
            rules,
            registry,
            spans,
            planner,
        })
    }

    /// Plans per fingerprint (`[plans]`), when enabled.
    pub fn planner(&self) -> Option<&Arc<Planner>> {
        self.planner.as_ref()
    }

    /// Where clients connect.
    pub fn proxy_addr(&self) -> SocketAddr {
        self.proxy.local_addr()
    }

    /// Where the admin HTTP server listens, when enabled.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// Where the state-changing admin endpoints listen, when they have their own listener.
    pub fn admin_write_addr(&self) -> Option<SocketAddr> {
        self.admin_write_addr
    }

    pub fn stats(&self) -> Option<&Arc<Stats>> {
        self.stats.as_ref()
    }

    pub fn rules(&self) -> &Arc<RuleEngine> {
        &self.rules
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Re-reads the rule files (SIGHUP). On error the previous rules stay active.
    ///
    /// # Errors
    /// The load error, naming file, line and field.
    pub fn reload_rules(&self) -> Result<(), RuleLoadError> {
        self.rules.reload().map(|set| {
            tracing::info!(rules = set.rules.len(), "rules reloaded");
        })
    }

    /// Re-reads the client TLS certificate and key (SIGHUP), logging the outcome; on error the
    /// pair in use stays.
    ///
    /// # Errors
    /// The files cannot be read or the key does not match the certificate.
    pub fn reload_tls(&self) -> Result<(), crate::proxy::tls::TlsError> {
        if self.proxy.reload_tls()? {
            tracing::info!("TLS certificate reloaded");
        }
        Ok(())
    }

    /// Graceful stop: the proxy drains (see [`Proxy::shutdown`]), then the admin server stops.
    pub fn shutdown(self) {
        // /readyz turns 503 first, while running statements may still finish.
        self.probe.drain();
        self.proxy.shutdown();
        let _ = self.background.stop.send(());
        let _ = self.background.thread.join();
        // The sessions (the queue's senders) are gone: what is queued is sent now.
        if let Some(spans) = self.spans {
            spans.shutdown();
        }
    }
}

/// The span exporter, with what the spans say about the server and the rules.
fn start_span_export(
    config: &Config,
    rules: &Arc<RuleEngine>,
    registry: &Registry,
) -> Result<(crate::otel::SpanObserver, crate::otel::export::SpanExport), AppError> {
    // A bad upstream is reported by the proxy's start just after; spans then name no server.
    let server = crate::proxy::upstream::Upstream::from_config(config)
        .ok()
        .map(|u| (u.host().to_owned(), u.port()));
    let rules = rules.clone();
    let context = crate::otel::export::ExportContext {
        server,
        max_query_length: config.stats.max_query_length,
        rules_of: Box::new(move |fp| rules.rules_for_fingerprint(fp)),
    };
    Ok(crate::otel::export::start(
        &config.tracing,
        context,
        registry,
    )?)
}

fn reload_response(engine: &RuleEngine) -> (axum::http::StatusCode, axum::Json<serde_json::Value>) {
    match engine.reload() {
        Ok(set) => (
            axum::http::StatusCode::OK,
            axum::Json(serde_json::json!({ "reloaded": true, "rules": set.rules.len() })),
        ),
        Err(error) => {
            tracing::warn!(%error, "rule reload rejected; previous rules stay active");
            (
                axum::http::StatusCode::UNPROCESSABLE_ENTITY,
                axum::Json(serde_json::json!({ "reloaded": false, "error": error.to_string() })),
            )
        }
    }
}

fn bind_admin(addr: Option<&str>) -> Result<Option<std::net::TcpListener>, AppError> {
    addr.map(|addr| {
        std::net::TcpListener::bind(addr).map_err(|source| AppError::AdminBind {
            addr: addr.to_owned(),
            source,
        })
    })
    .transpose()
}

fn local_addr(listener: Option<&std::net::TcpListener>) -> Result<Option<SocketAddr>, AppError> {
    listener
        .map(|l| l.local_addr())
        .transpose()
        .map_err(AppError::Background)
}

fn start_background(
    admin: Vec<(std::net::TcpListener, axum::Router)>,
    catalog: Option<Arc<CatalogOracle>>,
    rewriter: Arc<crate::rewrite::Rewriter>,
    stats: Option<Arc<Stats>>,
    planner: Option<Arc<Planner>>,
) -> Result<Background, AppError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(AppError::Background)?;
    let (stop, stopped) = oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("pgshape-admin".into())
        .spawn(move || {
            runtime.block_on(async move {
                let refresher = catalog.as_ref().map(|c| c.spawn_refresher());
                // Rewrite proofs and shadow runs, off the proxy's workers.
                let rewrites = rewriter.spawn_worker();
                // The per-shape history behind the admin page's charts (read only there).
                let history = stats.filter(|_| !admin.is_empty()).map(|stats| {
                    tokio::spawn(async move {
                        let mut ticks = tokio::time::interval(stats.config().history_interval());
                        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                        loop {
                            ticks.tick().await;
                            stats.tick_history();
                            // Shapes slow over the interval just closed get their plan.
                            if let Some(planner) = planner.clone() {
                                let p95s = stats.last_interval_p95();
                                tokio::spawn(async move { planner.explain_slow(p95s).await });
                            }
                        }
                    })
                });
                let (stopping, stop_seen) = tokio::sync::watch::channel(false);
                let servers: Vec<_> = admin
                    .into_iter()
                    .map(|(listener, router)| {
                        let mut stop_seen = stop_seen.clone();
                        tokio::spawn(async move {
                            let shutdown = async move {
                                let _ = stop_seen.wait_for(|stop| *stop).await;
                            };
                            let served = async {
                                listener.set_nonblocking(true)?;
                                let listener = tokio::net::TcpListener::from_std(listener)?;
                                admin::serve(listener, router, shutdown)
                                    .await
                                    .map_err(std::io::Error::other)
                            };
                            if let Err(error) = served.await {
                                tracing::error!(%error, "admin server failed");
                            }
                        })
                    })
                    .collect();
                let _ = stopped.await;
                let _ = stopping.send(true);
                for server in servers {
                    let _ = server.await;
                }
                if let Some(refresher) = refresher {
                    refresher.abort();
                }
                if let Some(rewrites) = rewrites {
                    rewrites.abort();
                }
                if let Some(history) = history {
                    history.abort();
                }
            });
        })
        .map_err(AppError::Background)?;
    Ok(Background { stop, thread })
}

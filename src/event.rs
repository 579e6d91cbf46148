//! The per-statement event: the one thing the proxy produces for the rest of pgshape.
//!
//! The session's statement tracker emits exactly one [`StatementEvent`] per executed statement
//! (one per statement of a multi-statement simple `Query`, one per `Execute` in the extended
//! protocol) to every [`StatementObserver`] it was given. Stats, the slow log and rules plug in
//! here; the proxy itself knows nothing about them.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::sql::Fingerprint;

/// Who is talking: fixed for the life of a client session once startup completed.
#[derive(Debug, Clone, Default)]
pub struct SessionInfo {
    pub database: String,
    pub user: String,
    pub application_name: String,
    pub client_addr: Option<SocketAddr>,
}

/// One statement's text, shared by every execution of it (a prepared statement is parsed once
/// and executed many times, so this is reference-counted and never copied per execution).
#[derive(Debug)]
pub struct StatementText {
    /// The statement's SQL exactly as the client sent it (one statement of a multi-statement
    /// query is a sub-slice of the `Query` message; no copy).
    pub sql: Bytes,
    /// Stable shape id of `sql`; `None` when statistics are switched off.
    pub fingerprint: Option<Fingerprint>,
    /// The rule whose rewrite the server ran in place of `sql` (statistics stay on the
    /// original's fingerprint, split by this variant).
    pub rewritten_by: Option<Arc<str>>,
    /// A rewrite to compare with, not to send: each Bind of this prepared statement outside a
    /// transaction block may be sampled for a shadow run ([`SessionGate::shadow_bind`]).
    pub shadow: Option<Arc<ShadowTarget>>,
    /// The Parse's parameter types, and an observer's request for one Bind's values.
    pub bind: BindSample,
}

/// Parameter values of one Bind of a statement, captured only when an observer asked for them
/// (the plan sampler, for a `$n` shape without an explainable sample): the tracker checks
/// [`BindSample::wanted`] at each Bind (one relaxed load) and copies nothing otherwise.
#[derive(Debug, Default)]
pub struct BindSample {
    /// The Parse's parameter-type section (Int16 count, then the OIDs; 0 = unspecified);
    /// empty for simple-protocol statements.
    pub param_types: Bytes,
    wanted: AtomicBool,
    /// Set once `captured` holds values.
    filled: AtomicBool,
    /// The captured Bind's undecoded parameter section, until the observer takes it.
    captured: Mutex<Option<Bytes>>,
}

impl BindSample {
    /// Largest parameter section copied: samples stay small (bounded memory).
    pub const MAX_BYTES: usize = 64 * 1024;

    /// A statement's sample with the Parse's parameter types.
    pub fn with_types(param_types: Bytes) -> BindSample {
        BindSample {
            param_types,
            ..BindSample::default()
        }
    }

    /// Asks for the values of this statement's next Bind.
    pub fn request(&self) {
        self.wanted.store(true, Ordering::Relaxed);
    }

    #[inline]
    pub fn wanted(&self) -> bool {
        self.wanted.load(Ordering::Relaxed)
    }

    /// Keeps a copy of `params` (a Bind's parameter section) if a request is open. A Bind
    /// over [`BindSample::MAX_BYTES`] is not copied; the request stays open for a smaller one.
    pub fn capture(&self, params: &[u8]) {
        if params.len() <= Self::MAX_BYTES && self.wanted.swap(false, Ordering::Relaxed) {
            *self.captured.lock().unwrap_or_else(|e| e.into_inner()) =
                Some(Bytes::copy_from_slice(params));
            self.filled.store(true, Ordering::Release);
        }
    }

    /// The captured parameter section, if any (it is not kept here after this).
    pub fn take(&self) -> Option<Bytes> {
        // A plain load first: the sampler asks at every finished statement.
        if !self.filled.load(Ordering::Relaxed) || !self.filled.swap(false, Ordering::Acquire) {
            return None;
        }
        self.captured
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }
}

/// The rewritten text of a prepared statement under shadow verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShadowTarget {
    pub rule: Arc<str>,
    pub sql: Bytes,
    /// The Parse's parameter-type section as the client sent it.
    pub param_types: Bytes,
}

/// A statement's replacement, decided by a rewrite rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewrite {
    pub rule: Arc<str>,
    /// What the server gets instead (same `$n` parameters).
    pub sql: Bytes,
    /// Not to send: the statement is under shadow verification, and its executions are
    /// sampled at Bind, where the parameter values are.
    pub shadow: bool,
}

/// Which sub-protocol carried the statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// A `Query` message (psql, psycopg2, pgbench -M simple).
    Simple,
    /// `Parse`/`Bind`/`Execute` (JDBC, asyncpg, psycopg 3 server-side binding, pgbench -M extended).
    Extended,
}

/// A finished statement, as seen by the proxy.
#[derive(Debug)]
pub struct StatementEvent<'a> {
    pub session: &'a SessionInfo,
    pub statement: &'a Arc<StatementText>,
    pub protocol: Protocol,
    /// Server-side latency as seen by the proxy: from forwarding the statement (or, when it was
    /// pipelined behind others, from the completion of the statement before it) to the message
    /// that ended it.
    pub duration: Duration,
    /// When the ending message arrived.
    pub finished_at: Instant,
    /// Rows from the CommandComplete tag (`SELECT 5`, `UPDATE 3`, `COPY 10`), or the number of
    /// DataRows when the tag carries none (PortalSuspended, `SHOW`).
    pub rows: u64,
    /// The command word(s) of the CommandComplete tag (`SELECT`, `INSERT`, `CREATE TABLE`);
    /// empty for errors, empty queries and suspended portals.
    pub command: &'a str,
    /// SQLSTATE of the ErrorResponse that ended the statement, if it failed.
    pub sqlstate: Option<[u8; 5]>,
    /// Whether the statement ran inside an explicit transaction block.
    pub in_transaction: bool,
}

impl StatementEvent<'_> {
    /// The SQLSTATE as text, when the statement failed.
    pub fn sqlstate_str(&self) -> Option<&str> {
        self.sqlstate
            .as_ref()
            .and_then(|code| std::str::from_utf8(code).ok())
    }
}

/// Receives every finished statement. Called on the session's own task, on the hot path: an
/// implementation must not block and should not allocate for a statement it has seen before.
pub trait StatementObserver: Send + Sync {
    fn on_statement(&self, event: &StatementEvent<'_>);
}

/// Observers a session reports to.
pub type Observers = Arc<[Arc<dyn StatementObserver>]>;

/// A rule's message for the client, sent as a WARNING notice or in a blocking error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub rule: String,
    pub message: String,
    pub hint: Option<String>,
}

/// What the rules decided for one execution of a statement.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Sent to the client as NoticeResponses before the statement's results.
    pub warnings: Vec<Notice>,
    /// When set, the statement is not executed and the client gets this as an error.
    pub block: Option<Notice>,
}

impl Verdict {
    pub fn is_allow(&self) -> bool {
        self.warnings.is_empty() && self.block.is_none()
    }
}

/// Decides, before a statement is forwarded, whether it runs as is, runs with a warning, or is
/// refused. Shared by all sessions; each session gets its own [`SessionGate`] for per-connection
/// state (such as counting repeated executions for n+1 detection).
pub trait StatementGate: Send + Sync {
    fn open_session(&self) -> Box<dyn SessionGate>;
}

/// A session's view of the rules. Called on the session's task for every execution: the
/// simple-protocol statements of each Query, and each Execute.
pub trait SessionGate {
    fn check(
        &mut self,
        statement: &StatementText,
        session: &SessionInfo,
        in_transaction: bool,
        now: Instant,
    ) -> Verdict;

    /// The replacement for `statement`, asked where its text goes to the server (each
    /// statement of a Query, each Parse) before [`SessionGate::check`].
    fn rewrite(
        &mut self,
        _statement: &StatementText,
        _session: &SessionInfo,
        _in_transaction: bool,
        _now: Instant,
    ) -> Option<Rewrite> {
        None
    }

    /// A Bind, outside a transaction block, of a prepared statement under shadow verification
    /// (`params` is the Bind's undecoded parameter section).
    fn shadow_bind(
        &mut self,
        _statement: &StatementText,
        _target: &ShadowTarget,
        _session: &SessionInfo,
        _params: &[u8],
    ) {
    }

    /// The server reported ReadyForQuery with this transaction status.
    fn on_ready_for_query(&mut self, _status: u8) {}
}

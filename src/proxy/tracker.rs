//! Turns the two message streams of one session into one [`StatementEvent`] per statement.
//!
//! The client side registers what it forwarded (Query, Parse, Bind, Execute, Describe, Close,
//! Sync); each registration that the server will answer becomes an entry in a FIFO of expected
//! responses. The server side pops that FIFO as answers arrive, so pipelined requests are matched
//! to their replies in order, as tokio-postgres and the server itself do. After an error the
//! server skips everything up to the next Sync (extended protocol) or ends the query string
//! (simple protocol); the tracker drops the same entries, so it never drifts out of step.
//!
//! Pure state: no I/O, time is passed in, so it is tested with scripted message sequences.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use crate::event::{
    Notice, Observers, Protocol, SessionGate, SessionInfo, StatementEvent, StatementText, Verdict,
};
use crate::protocol::backend::{BackendMessage, split_command_tag};
use crate::protocol::frontend::FrontendMessage;
use crate::proxy::intercept;
use crate::sql::{self, FastHasher, FingerprintCache};

/// Prepared statements and named portals kept per session before new names are no longer
/// remembered (their executions are then reported with a placeholder text): bounds memory
/// against a client that prepares without ever closing.
const MAX_NAMED: usize = 10_000;

/// Statement texts a session remembers to recognise a verbatim repeat (see
/// [`Tracker::recent_text`]), and the longest text remembered.
const RECENT_TEXTS: usize = 4;
const RECENT_TEXT_MAX_BYTES: usize = 4096;

/// What an entry of the response FIFO is waiting for.
#[derive(Debug)]
enum Expect {
    /// ParseComplete (or the error that fails the Parse).
    ParseComplete(Arc<StatementText>),
    /// BindComplete (or the error that fails the Bind).
    BindComplete(Arc<StatementText>),
    /// A statement run: simple-protocol statement or Execute.
    Completion {
        text: Arc<StatementText>,
        protocol: Protocol,
        rows: u64,
    },
    /// RowDescription or NoData answering a Describe.
    Description,
    CloseComplete,
    FunctionCallResponse,
    /// ReadyForQuery, after a Sync, a Query or a FunctionCall.
    Ready,
    /// A CloseComplete, ParseComplete or BindComplete answering a message pgshape sent itself
    /// (to raise a block); the client never sees it.
    Swallow,
}

#[derive(Debug)]
struct Entry {
    expect: Expect,
    forwarded_at: Instant,
    /// Rule warnings to send the client before the first answer to this entry.
    notice: Option<Bytes>,
}

/// What to do with a client message after the tracker registered it.
#[derive(Debug, PartialEq, Eq)]
pub enum ClientAction {
    Forward,
    /// Send these bytes to the server instead (a statement was blocked).
    Replace(Vec<u8>),
}

/// What to do with a server message.
#[derive(Debug, PartialEq, Eq)]
pub enum ServerAction {
    Forward,
    /// Send these bytes to the client first (rule warnings), then the message.
    Prepend(Bytes),
    /// The answer to a message pgshape sent itself: do not forward.
    Drop,
}

/// Per-session statement tracking. See the module docs.
pub struct Tracker {
    session: SessionInfo,
    observers: Observers,
    fingerprints: Option<Arc<FingerprintCache>>,
    /// Keyed by the client's own names, in the client's own session: a hasher resistant to
    /// chosen collisions would only protect a client from itself, and SipHash costs every Bind.
    prepared: HashMap<Bytes, Arc<StatementText>, FastHasher>,
    unnamed_statement: Option<Arc<StatementText>>,
    portals: HashMap<Bytes, Arc<StatementText>, FastHasher>,
    unnamed_portal: Option<Arc<StatementText>>,
    pending: VecDeque<Entry>,
    /// Last known transaction status (`I`, `T`, `E`).
    tx_status: u8,
    /// When the server last finished answering something: a pipelined statement cannot start
    /// before the one ahead of it finished.
    last_completion: Instant,
    statements: u64,
    gate: Option<Box<dyn SessionGate>>,
    recent: VecDeque<Arc<StatementText>>,
}

impl Tracker {
    /// Without `fingerprints` no fingerprint is computed (statistics and rules disabled).
    pub fn new(
        session: SessionInfo,
        observers: Observers,
        fingerprints: Option<Arc<FingerprintCache>>,
    ) -> Self {
        Self::with_gate(session, observers, fingerprints, None)
    }

    /// As [`Tracker::new`], consulting `gate` before each statement execution.
    pub fn with_gate(
        session: SessionInfo,
        observers: Observers,
        fingerprints: Option<Arc<FingerprintCache>>,
        gate: Option<Box<dyn SessionGate>>,
    ) -> Self {
        Tracker {
            session,
            observers,
            fingerprints,
            prepared: HashMap::default(),
            unnamed_statement: None,
            portals: HashMap::default(),
            unnamed_portal: None,
            pending: VecDeque::new(),
            tx_status: b'I',
            last_completion: Instant::now(),
            statements: 0,
            gate,
            recent: VecDeque::new(),
        }
    }

    pub fn session(&self) -> &SessionInfo {
        &self.session
    }

    /// True when every request forwarded so far has been fully answered.
    pub fn is_idle(&self) -> bool {
        self.pending.is_empty()
    }

    /// Statements finished since the session started.
    pub fn statements(&self) -> u64 {
        self.statements
    }

    /// Last transaction status the server reported (`I`, `T` or `E`).
    pub fn transaction_status(&self) -> u8 {
        self.tx_status
    }

    fn push(&mut self, expect: Expect, now: Instant) {
        self.pending.push_back(Entry {
            expect,
            forwarded_at: now,
            notice: None,
        });
    }

    /// Asks the gate about one execution of `text`, then queues its completion entry carrying
    /// any warnings. Returns the block, if the statement must not run; `swallowed` entries are
    /// queued ahead of it for the replies to pgshape's own messages that raise the block.
    fn push_execution(
        &mut self,
        text: Arc<StatementText>,
        protocol: Protocol,
        swallowed_on_block: usize,
        now: Instant,
    ) -> Option<Notice> {
        let verdict = match self.gate.as_mut() {
            Some(gate) => gate.check(&text, &self.session, self.tx_status != b'I', now),
            None => Verdict::default(),
        };
        if verdict.block.is_some() {
            for _ in 0..swallowed_on_block {
                self.push(Expect::Swallow, now);
            }
        }
        self.pending.push_back(Entry {
            expect: Expect::completion(text, protocol),
            forwarded_at: now,
            notice: intercept::warnings(&verdict.warnings),
        });
        verdict.block
    }

    /// Registers a client message about to be forwarded to the server, and says whether a
    /// blocked statement means something else must be sent in its place.
    pub fn on_client_message(
        &mut self,
        message: &FrontendMessage<'_>,
        now: Instant,
    ) -> ClientAction {
        match *message {
            FrontendMessage::Query { sql } => {
                let mut any = false;
                // The Query to send instead, built only once a statement is rewritten or
                // blocked: everything up to `copied` is in it.
                let mut replaced: Option<Vec<u8>> = None;
                let mut copied = 0;
                for range in sql::split_statements(sql) {
                    any = true;
                    let (start, end) = (range.start, range.end);
                    let text = self.recent_text(&sql[range], &[]);
                    let (text, rewrite) = self.rewritten(text, &[], now);
                    if let Some(block) = self.push_execution(text, Protocol::Simple, 0, now) {
                        // Run what came before, then let the server raise the block: the rest
                        // of the string is skipped exactly as after a real error.
                        let out = replaced.get_or_insert_with(Vec::new);
                        out.extend_from_slice(&sql[copied..start]);
                        out.extend_from_slice(intercept::block_sql(&block).as_bytes());
                        copied = sql.len();
                        break;
                    }
                    if let Some(rewrite) = rewrite {
                        let out = replaced.get_or_insert_with(|| Vec::with_capacity(sql.len()));
                        out.extend_from_slice(&sql[copied..start]);
                        out.extend_from_slice(&rewrite);
                        copied = end;
                    }
                }
                if !any {
                    // The server answers an empty query string with EmptyQueryResponse.
                    let text = self.text(Bytes::copy_from_slice(sql));
                    self.push(Expect::completion(text, Protocol::Simple), now);
                }
                self.push(Expect::Ready, now);
                return match replaced {
                    Some(mut out) => {
                        out.extend_from_slice(&sql[copied..]);
                        ClientAction::Replace(crate::protocol::encode::query_bytes(&out).to_vec())
                    }
                    None => ClientAction::Forward,
                };
            }
            FrontendMessage::Parse {
                name,
                sql,
                param_types,
            } => {
                let text = self.recent_text(sql, param_types);
                let (text, rewrite) = self.rewritten(text, param_types, now);
                if name.is_empty() {
                    self.unnamed_statement = Some(text.clone());
                } else if self.prepared.len() < MAX_NAMED || self.prepared.contains_key(name) {
                    self.prepared
                        .insert(Bytes::copy_from_slice(name), text.clone());
                }
                self.push(Expect::ParseComplete(text), now);
                if let Some(rewrite) = rewrite {
                    return ClientAction::Replace(
                        crate::protocol::encode::parse_raw(name, &rewrite, param_types).to_vec(),
                    );
                }
            }
            FrontendMessage::Bind {
                portal,
                statement,
                params,
            } => {
                let text = if statement.is_empty() {
                    self.unnamed_statement.clone()
                } else {
                    self.prepared.get(statement).cloned()
                }
                .unwrap_or_else(|| self.unknown("prepared statement", statement));
                if let (Some(target), Some(gate)) = (&text.shadow, self.gate.as_mut())
                    && self.tx_status == b'I'
                {
                    gate.shadow_bind(&text, target, &self.session, params);
                }
                // A plan sample asked for this statement's values (see `event::BindSample`).
                if text.bind.wanted() {
                    text.bind.capture(params);
                }
                if portal.is_empty() {
                    self.unnamed_portal = Some(text.clone());
                } else if self.portals.len() < MAX_NAMED || self.portals.contains_key(portal) {
                    self.portals
                        .insert(Bytes::copy_from_slice(portal), text.clone());
                }
                self.push(Expect::BindComplete(text), now);
            }
            FrontendMessage::Execute { portal, .. } => {
                let text = if portal.is_empty() {
                    self.unnamed_portal.clone()
                } else {
                    self.portals.get(portal).cloned()
                }
                .unwrap_or_else(|| self.unknown("portal", portal));
                if let Some(block) = self.push_execution(text, Protocol::Extended, 3, now) {
                    return ClientAction::Replace(intercept::extended_block(&block));
                }
            }
            FrontendMessage::Describe { .. } => self.push(Expect::Description, now),
            FrontendMessage::Close { kind, name } => {
                match (kind, name.is_empty()) {
                    (b'S', true) => self.unnamed_statement = None,
                    (b'S', false) => {
                        self.prepared.remove(name);
                    }
                    (_, true) => self.unnamed_portal = None,
                    (_, false) => {
                        self.portals.remove(name);
                    }
                }
                self.push(Expect::CloseComplete, now);
            }
            FrontendMessage::Sync => self.push(Expect::Ready, now),
            FrontendMessage::FunctionCall => {
                self.push(Expect::FunctionCallResponse, now);
                self.push(Expect::Ready, now);
            }
            _ => {}
        }
        ClientAction::Forward
    }

    /// Counts one DataRow for the statement at the head of the FIFO. Kept separate from
    /// [`Tracker::on_server_message`] because it is the one per-row call on the hot path.
    /// Returns rule warnings to send before the row when it is the statement's first answer.
    #[inline]
    pub fn on_data_row(&mut self) -> Option<Bytes> {
        if let Some(Entry {
            expect: Expect::Completion { rows, .. },
            notice,
            ..
        }) = self.pending.front_mut()
        {
            *rows += 1;
            return notice.take();
        }
        None
    }

    /// Consumes a server message, emitting events for the statements it ends, and says how
    /// the message is to be relayed.
    pub fn on_server_message(
        &mut self,
        message: &BackendMessage<'_>,
        now: Instant,
    ) -> ServerAction {
        let answers_statement = matches!(
            message,
            BackendMessage::RowDescription
                | BackendMessage::CommandComplete { .. }
                | BackendMessage::EmptyQueryResponse
                | BackendMessage::PortalSuspended
                | BackendMessage::ErrorResponse(_)
                | BackendMessage::CopyInResponse
                | BackendMessage::CopyOutResponse
                | BackendMessage::CopyBothResponse
        );
        let mut action = ServerAction::Forward;
        match self.pending.front_mut() {
            Some(Entry {
                expect: Expect::Swallow,
                ..
            }) if matches!(
                message,
                BackendMessage::ParseComplete
                    | BackendMessage::BindComplete
                    | BackendMessage::CloseComplete
            ) =>
            {
                self.pop_front(now);
                return ServerAction::Drop;
            }
            Some(Entry {
                expect: Expect::Completion { .. },
                notice,
                ..
            }) if answers_statement => {
                if let Some(notice) = notice.take() {
                    action = ServerAction::Prepend(notice);
                }
            }
            _ => {}
        }
        match *message {
            BackendMessage::DataRow => {
                if let Some(notice) = self.on_data_row() {
                    action = ServerAction::Prepend(notice);
                }
            }
            BackendMessage::ParseComplete
            | BackendMessage::BindComplete
            | BackendMessage::CloseComplete
            | BackendMessage::FunctionCallResponse => {
                self.pop_front(now);
            }
            BackendMessage::RowDescription | BackendMessage::NoData => {
                if matches!(
                    self.pending.front(),
                    Some(Entry {
                        expect: Expect::Description,
                        ..
                    })
                ) {
                    self.pop_front(now);
                }
            }
            BackendMessage::CommandComplete { tag } => {
                let (command, tag_rows) = split_command_tag(tag);
                self.finish_statement(now, command, tag_rows);
                self.track_transaction_command(command);
            }
            BackendMessage::EmptyQueryResponse | BackendMessage::PortalSuspended => {
                self.finish_statement(now, b"", None);
            }
            BackendMessage::ErrorResponse(fields) => self.on_error(fields.code, now),
            BackendMessage::ReadyForQuery { status } => {
                self.tx_status = status;
                // Anything still queued before the Ready marker got no answer of its own (the
                // server skipped it); drop it so the FIFO realigns on every ReadyForQuery.
                while let Some(entry) = self.pending.pop_front() {
                    if matches!(entry.expect, Expect::Ready) {
                        break;
                    }
                }
                if status == b'I' {
                    // Portals do not outlive their transaction.
                    self.portals.clear();
                    self.unnamed_portal = None;
                }
                if let Some(gate) = self.gate.as_mut() {
                    gate.on_ready_for_query(status);
                }
            }
            BackendMessage::ParameterStatus { name, value } if name == b"application_name" => {
                self.session.application_name = String::from_utf8_lossy(value).into_owned();
            }
            _ => {}
        }
        action
    }

    /// Pops the head of the FIFO and returns it with the time its work started: when it was
    /// forwarded, or when the server finished the entry before it, whichever is later.
    ///
    /// Only statement completions move that bound: the server does not flush ParseComplete or
    /// BindComplete on their own, so their arrival says nothing about when the statement
    /// behind them started. Neither does ReadyForQuery: the CloseComplete/ReadyForQuery of a
    /// `Close`+`Sync` that tokio-postgres sends ahead of its next Query arrive in the same read
    /// as that Query's result (and a ReadyForQuery the client waited for precedes the next
    /// forwarding anyway).
    fn pop_front(&mut self, now: Instant) -> Option<(Entry, Instant)> {
        let entry = self.pending.pop_front()?;
        let start = entry.forwarded_at.max(self.last_completion);
        if matches!(entry.expect, Expect::Completion { .. }) {
            self.last_completion = now;
        }
        Some((entry, start))
    }

    fn track_transaction_command(&mut self, command: &[u8]) {
        match command {
            b"BEGIN" | b"START TRANSACTION" => self.tx_status = b'T',
            b"COMMIT" | b"ROLLBACK" | b"END" | b"ABORT" | b"PREPARE TRANSACTION" => {
                self.tx_status = b'I';
            }
            _ => {}
        }
    }

    fn finish_statement(&mut self, now: Instant, command: &[u8], tag_rows: Option<u64>) {
        if !matches!(
            self.pending.front(),
            Some(Entry {
                expect: Expect::Completion { .. },
                ..
            })
        ) {
            tracing::debug!("statement completion with no statement waiting for it");
            return;
        }
        if let Some((entry, start)) = self.pop_front(now)
            && let Expect::Completion {
                text,
                protocol,
                rows,
            } = entry.expect
        {
            let finished = Finished {
                protocol,
                start,
                now,
                rows: tag_rows.unwrap_or(rows),
                command,
                sqlstate: None,
            };
            self.emit(&text, finished);
        }
    }

    fn on_error(&mut self, sqlstate: Option<[u8; 5]>, now: Instant) {
        let Some((entry, start)) = self.pop_front(now) else {
            return;
        };
        let (text, protocol, rows) = match entry.expect {
            Expect::Completion {
                text,
                protocol,
                rows,
            } => (text, protocol, rows),
            Expect::ParseComplete(text) | Expect::BindComplete(text) => {
                (text, Protocol::Extended, 0)
            }
            Expect::Ready => {
                // An error outside any request (e.g. FATAL on shutdown): nothing to skip.
                self.pending.push_front(entry);
                return;
            }
            _ => {
                self.skip_to_ready();
                return;
            }
        };
        self.emit(
            &text,
            Finished {
                protocol,
                start,
                now,
                rows,
                command: b"",
                sqlstate: sqlstate.or(Some(*b"XX000")),
            },
        );
        self.skip_to_ready();
    }

    /// After an error the server skips the rest of the query string or every message up to
    /// Sync; those entries will never be answered.
    fn skip_to_ready(&mut self) {
        while let Some(entry) = self.pending.front() {
            if matches!(entry.expect, Expect::Ready) {
                break;
            }
            self.pending.pop_front();
        }
    }

    fn emit(&mut self, text: &Arc<StatementText>, finished: Finished<'_>) {
        self.statements += 1;
        let command = std::str::from_utf8(finished.command).unwrap_or_default();
        let event = StatementEvent {
            session: &self.session,
            statement: text,
            protocol: finished.protocol,
            duration: finished.now.saturating_duration_since(finished.start),
            finished_at: finished.now,
            rows: finished.rows,
            command,
            sqlstate: finished.sqlstate,
            in_transaction: self.tx_status != b'I',
        };
        for observer in self.observers.iter() {
            observer.on_statement(&event);
        }
    }
}

/// How a statement ended, gathered before the event is built.
struct Finished<'a> {
    protocol: Protocol,
    start: Instant,
    now: Instant,
    rows: u64,
    command: &'a [u8],
    sqlstate: Option<[u8; 5]>,
}

impl Expect {
    fn completion(text: Arc<StatementText>, protocol: Protocol) -> Self {
        Expect::Completion {
            text,
            protocol,
            rows: 0,
        }
    }
}

mod texts;

#[cfg(test)]
mod tests;

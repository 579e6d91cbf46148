//! The statement tracker fed arbitrary message sequences from both sides, with the shipped
//! rules as its gate and the statistics as its observer: whatever order and content the
//! messages come in (a confused or hostile server, a pipelining client), it never panics.
//!
//! Input: a sequence of (side byte, frame); side's low bit picks client (0) or server (1).
#![no_main]

use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use pgshape::event::{Observers, SessionInfo, StatementGate, StatementObserver};
use pgshape::protocol::backend::BackendMessage;
use pgshape::protocol::frame::parse_header;
use pgshape::protocol::frontend::FrontendMessage;
use pgshape::proxy::tracker::Tracker;
use pgshape::rules::{RuleEngine, RulesConfig};
use pgshape::sql::FingerprintCache;
use pgshape::stats::{Stats, StatsConfig};

struct Shared {
    engine: Arc<RuleEngine>,
    stats: Arc<Stats>,
    fingerprints: Arc<FingerprintCache>,
}

static SHARED: LazyLock<Shared> = LazyLock::new(|| Shared {
    engine: Arc::new(RuleEngine::new(RulesConfig::default()).expect("embedded rules load")),
    stats: Arc::new(Stats::new(StatsConfig::default())),
    fingerprints: Arc::new(FingerprintCache::new(1024)),
});

fuzz_target!(|data: &[u8]| {
    let shared = &*SHARED;
    let observers: Observers = Arc::new([shared.stats.clone() as Arc<dyn StatementObserver>]);
    let mut tracker = Tracker::with_gate(
        SessionInfo::default(),
        observers,
        Some(shared.fingerprints.clone()),
        Some(shared.engine.open_session()),
    );
    let mut now = Instant::now();
    let mut buf = data;
    while let Some((&side, rest)) = buf.split_first() {
        let Ok(Some(header)) = parse_header(rest, 1 << 16) else {
            break;
        };
        let Some(frame) = rest.get(..header.frame_len) else {
            break;
        };
        now += Duration::from_micros(u64::from(side >> 1));
        if side & 1 == 0 {
            if let Ok(message) = FrontendMessage::decode(frame) {
                let _ = tracker.on_client_message(&message, now);
            }
        } else if let Ok(message) = BackendMessage::decode(frame) {
            let _ = tracker.on_server_message(&message, now);
        }
        buf = &rest[header.frame_len..];
    }
    let _ = tracker.is_idle();
});

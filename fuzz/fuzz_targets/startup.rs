//! The first packet of a connection, before any authentication: the most exposed parser.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pgshape::protocol::startup::{self, MAX_STARTUP_PACKET, StartupPacket};

fuzz_target!(|data: &[u8]| {
    let Ok(Some(len)) = startup::packet_len(data) else {
        return;
    };
    assert!((8..=MAX_STARTUP_PACKET).contains(&len));
    let Some(packet) = data.get(..len) else {
        return;
    };
    if let Ok(StartupPacket::Startup(message)) = startup::decode(packet) {
        for (name, value) in message.params() {
            assert!(!name.contains(&0) && !value.contains(&0));
        }
        let _ = message.param("user");
        let _ = message.param("database");
    }
});

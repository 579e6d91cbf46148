//! The frame reader and every message decoder, on a byte stream as the relay reads it: a
//! hostile peer controls every byte, so nothing may panic, loop or allocate by a length field.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pgshape::protocol::backend::{self, BackendMessage};
use pgshape::protocol::frame::{body, parse_header};
use pgshape::protocol::frontend::{BindParams, FrontendMessage, SaslInitialResponse};

/// Small, so that frames of every size class are reachable from short inputs.
const MAX_FRAME: usize = 4096;

fuzz_target!(|data: &[u8]| {
    let Some((&side, mut buf)) = data.split_first() else {
        return;
    };
    while let Ok(Some(header)) = parse_header(buf, MAX_FRAME) {
        assert!(header.frame_len >= 5 && header.frame_len <= MAX_FRAME);
        let Some(frame) = buf.get(..header.frame_len) else {
            break;
        };
        assert_eq!(body(frame).len(), frame.len() - 5);
        if side & 1 == 0 {
            if let Ok(FrontendMessage::Bind { params, .. }) = FrontendMessage::decode(frame) {
                let _ = BindParams::decode(params);
            }
            let _ = SaslInitialResponse::decode(frame);
        } else {
            if let Ok(BackendMessage::CommandComplete { tag }) = BackendMessage::decode(frame) {
                let (command, _) = backend::split_command_tag(tag);
                assert!(command.len() <= tag.len());
            }
            let _ = backend::strip_channel_binding(frame);
        }
        buf = &buf[header.frame_len..];
    }
});

//! Peer input is untrusted: every decoder must answer `Ok` or `Err` for any bytes, never panic
//! (a panic would drop the session without the clear error the proxy owes the client).

use proptest::prelude::*;

use super::backend::{BackendMessage, split_command_tag, strip_channel_binding};
use super::frame::parse_header;
use super::frontend::{FrontendMessage, SaslInitialResponse};
use super::{encode, startup};

/// A frame with a consistent length header, a tag the decoders know (or any), and a body of
/// arbitrary bytes: the shape that reaches the decoders after framing.
fn frame(tags: &'static [u8]) -> impl Strategy<Value = Vec<u8>> {
    (
        prop_oneof![prop::sample::select(tags), any::<u8>()],
        prop::collection::vec(any::<u8>(), 0..96),
    )
        .prop_map(|(tag, body)| {
            let mut f = vec![tag];
            f.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
            f.extend_from_slice(&body);
            f
        })
}

const FRONTEND_TAGS: &[u8] = b"QPBEDCSHFdcfXp";
const BACKEND_TAGS: &[u8] = b"123CDIsnTtEZRSKVGHW";

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn frontend_decoding_never_panics(f in frame(FRONTEND_TAGS)) {
        let _ = FrontendMessage::decode(&f);
        let _ = SaslInitialResponse::decode(&f);
    }

    #[test]
    fn backend_decoding_never_panics(f in frame(BACKEND_TAGS)) {
        if let Ok(BackendMessage::CommandComplete { tag }) = BackendMessage::decode(&f) {
            let _ = split_command_tag(tag);
        }
        let _ = strip_channel_binding(&f);
    }

    #[test]
    fn framing_never_panics_and_honours_the_limit(
        bytes in prop::collection::vec(any::<u8>(), 0..16),
        max in 5usize..100_000,
    ) {
        if let Ok(Some(h)) = parse_header(&bytes, max) {
            prop_assert!(h.frame_len >= 5 && h.frame_len <= max, "{h:?}");
        }
    }

    #[test]
    fn startup_decoding_never_panics(body in prop::collection::vec(any::<u8>(), 0..128), code in any::<u32>()) {
        let mut packet = ((body.len() + 8) as u32).to_be_bytes().to_vec();
        packet.extend_from_slice(&code.to_be_bytes());
        packet.extend_from_slice(&body);
        let _ = startup::decode(&packet);
        // The protocol-3.0 code with arbitrary parameters.
        packet[4..8].copy_from_slice(&196_608u32.to_be_bytes());
        let _ = startup::decode(&packet);
    }

    #[test]
    fn encoded_queries_decode_to_themselves(sql in "[^\u{0}]{0,200}") {
        let q = encode::query(&sql);
        prop_assert_eq!(
            FrontendMessage::decode(&q).unwrap(),
            FrontendMessage::Query { sql: sql.as_bytes() }
        );
        let p = encode::parse("s1", &sql);
        prop_assert_eq!(
            FrontendMessage::decode(&p).unwrap(),
            FrontendMessage::Parse { name: b"s1", sql: sql.as_bytes(), param_types: &[0, 0] }
        );
    }
}

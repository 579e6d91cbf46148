use super::*;

// RFC 7677, section 3: user "user", password "pencil".
const SALT: &str = "W22ZaJ0SNY7soEsUEjb6gQ==";
const CLIENT_FIRST: &str = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
const SERVER_NONCE: &str = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
const SERVER_FIRST: &str =
    "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
const CLIENT_FINAL: &str = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
const SERVER_FINAL: &str = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

fn pencil() -> Verifier {
    Verifier::from_password("pencil", &B64.decode(SALT).unwrap(), 4096)
}

/// The server side after RFC 7677's client-first-message.
fn rfc_start() -> (ServerExchange, String) {
    ServerExchange::start(
        pencil(),
        None,
        MECHANISM.as_bytes(),
        CLIENT_FIRST.as_bytes(),
        SERVER_NONCE,
    )
    .unwrap()
}

fn proven() -> ProvenKeys {
    let (exchange, _) = rfc_start();
    exchange.finish(CLIENT_FINAL.as_bytes()).unwrap().1
}

#[test]
fn server_side_matches_rfc_7677() {
    let (exchange, server_first) = rfc_start();
    assert_eq!(server_first, SERVER_FIRST);
    let (server_final, keys) = exchange.finish(CLIENT_FINAL.as_bytes()).unwrap();
    assert_eq!(server_final, SERVER_FINAL);
    assert_eq!(sha256(&keys.client_key), pencil().stored_key);
}

#[test]
fn a_wrong_proof_is_refused() {
    let (exchange, _) = rfc_start();
    let forged = CLIENT_FINAL.replace("p=dHzb", "p=eHzb");
    assert_eq!(
        exchange.finish(forged.as_bytes()).unwrap_err(),
        ScramError::BadProof
    );
}

/// The keys proven by one client exchange log in to a server holding the same verifier, and
/// the server's signature is checked.
#[test]
fn proven_keys_log_in_upstream() {
    let (mut client, first) = ClientExchange::start(proven(), "upstreamnonce");
    let (server, server_first) = ServerExchange::start(
        pencil(),
        None,
        MECHANISM.as_bytes(),
        first.as_bytes(),
        "servernonce",
    )
    .unwrap();
    let client_final = client.respond(server_first.as_bytes()).unwrap();
    let (server_final, _) = server.finish(client_final.as_bytes()).unwrap();
    client.verify(server_final.as_bytes()).unwrap();
    // A server that does not know the verifier cannot sign.
    assert_eq!(
        client.verify(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="),
        Err(ScramError::BadServerSignature)
    );
    assert_eq!(
        client.verify(b"e=invalid-proof"),
        Err(ScramError::ServerError("invalid-proof".into()))
    );
}

#[test]
fn another_salt_upstream_is_a_verifier_mismatch() {
    let (mut client, _) = ClientExchange::start(proven(), "abc");
    let other = "r=abcdef,s=c2FsdA==,i=4096";
    assert_eq!(
        client.respond(other.as_bytes()),
        Err(ScramError::VerifierMismatch)
    );
    let not_ours = format!("r=xyz,s={SALT},i=4096");
    assert!(matches!(
        client.respond(not_ours.as_bytes()),
        Err(ScramError::Malformed(_))
    ));
}

#[test]
fn channel_binding_to_pgshapes_certificate() {
    let end_point = vec![7u8; 32];
    let first = "p=tls-server-end-point,,n=,r=clientnonce";
    let (server, server_first) = ServerExchange::start(
        pencil(),
        Some(end_point.clone()),
        MECHANISM_PLUS.as_bytes(),
        first.as_bytes(),
        "srv",
    )
    .unwrap();
    let nonce = attribute(&server_first, "r").unwrap().to_owned();
    let final_with = |binding: &[u8]| {
        let mut data = b"p=tls-server-end-point,,".to_vec();
        data.extend_from_slice(binding);
        let without_proof = format!("c={},r={nonce}", B64.encode(&data));
        let auth = format!("n=,r=clientnonce,{server_first},{without_proof}");
        let salted = {
            let mut s = [0u8; 32];
            ring::pbkdf2::derive(
                ring::pbkdf2::PBKDF2_HMAC_SHA256,
                std::num::NonZeroU32::new(4096).unwrap(),
                &B64.decode(SALT).unwrap(),
                b"pencil",
                &mut s,
            );
            s
        };
        let client_key = hmac_sha256(&salted, b"Client Key");
        let proof = xor(
            &client_key,
            &hmac_sha256(&sha256(&client_key), auth.as_bytes()),
        );
        format!("{without_proof},p={}", B64.encode(proof))
    };
    assert!(server.finish(final_with(&end_point).as_bytes()).is_ok());

    let (server, _) = ServerExchange::start(
        pencil(),
        Some(end_point),
        MECHANISM_PLUS.as_bytes(),
        first.as_bytes(),
        "srv",
    )
    .unwrap();
    assert!(matches!(
        server.finish(final_with(&[9u8; 32]).as_bytes()),
        Err(ScramError::ChannelBinding(_))
    ));
}

#[test]
fn downgrades_and_mismatched_flags_are_refused() {
    let start = |end_point: Option<Vec<u8>>, mechanism: &str, first: &str| {
        ServerExchange::start(
            pencil(),
            end_point,
            mechanism.as_bytes(),
            first.as_bytes(),
            "s",
        )
        .map(|_| ())
    };
    // `y` over TLS, where -PLUS was offered: a downgrade.
    assert!(matches!(
        start(Some(vec![1]), MECHANISM, "y,,n=,r=abc"),
        Err(ScramError::ChannelBinding(_))
    ));
    // `y` without TLS is fine, so is `n`.
    start(None, MECHANISM, "y,,n=,r=abc").unwrap();
    start(Some(vec![1]), MECHANISM, "n,,n=,r=abc").unwrap();
    // -PLUS without TLS, or with the wrong flag.
    assert!(start(None, MECHANISM_PLUS, "p=tls-server-end-point,,n=,r=abc").is_err());
    assert!(start(Some(vec![1]), MECHANISM_PLUS, "n,,n=,r=abc").is_err());
    assert!(start(Some(vec![1]), MECHANISM_PLUS, "p=tls-unique,,n=,r=abc").is_err());
    assert!(start(None, "PLAIN", "n,,n=,r=abc").is_err());
    assert!(start(None, MECHANISM, "n,authz,n=,r=abc").is_err());
    assert!(start(None, MECHANISM, "n,,r=abc").is_err());
}

#[test]
fn verifier_text_round_trips_and_names_what_it_is_not() {
    let v = pencil();
    assert_eq!(Verifier::parse(&v.to_text()).unwrap(), v);
    assert_eq!(
        Verifier::parse("md5a3556571e93b0d20722ba62be61e8c2d"),
        Err(ScramError::NotScram("an md5 hash"))
    );
    assert!(matches!(
        Verifier::parse("SCRAM-SHA-256$4096:c2FsdA==$short:keys"),
        Err(ScramError::NotScram(_))
    ));
    assert!(matches!(
        Verifier::parse("hunter2"),
        Err(ScramError::NotScram(_))
    ));
    // Secrets never reach Debug output.
    let shown = format!("{v:?} {:?}", proven());
    assert!(!shown.contains(&B64.encode(v.stored_key)), "{shown}");
}

#[test]
fn end_point_hash_follows_the_signature_algorithm() {
    // A minimal DER shape: SEQUENCE { SEQUENCE {}, SEQUENCE { OID ecdsa-with-SHA384 } }.
    let der = [
        0x30, 0x0e, 0x30, 0x00, 0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03,
        0x03,
    ];
    assert_eq!(tls_server_end_point(&der).len(), 48);
    let mut sha256_cert = der;
    sha256_cert[15] = 0x02; // ecdsa-with-SHA256
    assert_eq!(tls_server_end_point(&sha256_cert).len(), 32);
    assert_eq!(tls_server_end_point(b"not der").len(), 32);
}

//! The `pgshape` binary as a user runs it: `--help`, and `check` as a CI step.

use std::process::Command;

fn pgshape(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_pgshape"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run pgshape")
}

#[test]
fn help_describes_serve_and_check() {
    let out = pgshape(&["--help"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("serve"), "{text}");
    assert!(text.contains("check"), "{text}");
    let out = pgshape(&["serve", "--help"]);
    let text = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--listen",
        "--upstream",
        "--admin",
        "--config",
        "--rules",
        "--schema-dsn",
        "PGSHAPE_UPSTREAM",
    ] {
        assert!(text.contains(flag), "serve --help lacks {flag}: {text}");
    }
}

#[test]
fn check_fails_the_build_on_the_incident_shape() {
    let out = pgshape(&[
        "check",
        "--fail-on",
        "warning",
        "tests/corpus/django-orders.sql",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("tests/corpus/django-orders.sql:12: warning [distinct-over-fanout-join]"),
        "{text}"
    );
    assert!(text.contains("hint: use EXISTS"), "{text}");
    // Warnings only: the default --fail-on error lets the build pass.
    let out = pgshape(&["check", "tests/corpus/django-orders.sql"]);
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn check_reads_stdin_and_speaks_github() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pgshape"))
        .args(["check", "--format", "github", "--fail-on", "error", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"SELECT 1;\nDELETE FROM accounts;\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("::error"), "{text}");
    assert!(text.contains("update-or-delete-without-where"), "{text}");
}

#[test]
fn bad_config_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pgshape.toml");
    std::fs::write(&path, "listen = \"127.0.0.1:0\"\nno_such_key = 1\n").unwrap();
    let out = pgshape(&["serve", "--config", path.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("pgshape.toml"), "{err}");
    assert!(err.contains("no_such_key"), "{err}");
}

#[test]
fn demo_catches_the_incident_shape_and_cleans_up() {
    let out = pgshape(&["demo", "--once", "--orders", "3000"]);
    let text = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}\n{err}");
    assert!(
        text.contains("WARNING: pgshape rule distinct-over-fanout-join"),
        "{text}"
    );
    assert!(text.contains("[fan-out judged by catalog]"), "{text}");
    assert!(
        text.contains("0 rule warnings, same 25 orders: yes"),
        "{text}"
    );
    let dir = text
        .split("(data in ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .unwrap_or_else(|| panic!("demo names its data directory: {text}"));
    assert!(
        !std::path::Path::new(dir).exists(),
        "throw-away server directory left behind: {dir}"
    );
}

#[test]
fn example_config_parses_and_matches_the_defaults() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("pgshape.example.toml");
    let config = pgshape::config::Config::from_file(&path).expect("example config is valid");
    let defaults = pgshape::config::Config::default();
    assert_eq!(config.listen, defaults.listen);
    assert_eq!(config.max_frame_size, defaults.max_frame_size);
    assert_eq!(
        config.stats.max_fingerprints,
        defaults.stats.max_fingerprints
    );
    assert_eq!(
        config.stats.histogram_buckets_ms,
        defaults.stats.histogram_buckets_ms
    );
    assert_eq!(config.rules, defaults.rules);
    config.stats.validate().expect("valid [stats]");
}

//! `pgshape top` in a real terminal: tmux runs it against a real pgshape with traffic; keys are
//! sent and the screen is read back as the user would see it. Also `--once` and
//! `--format json` over a pipe.

mod support;

use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use support::app::AppUnderTest;

const SCHEMA: &str = "CREATE TABLE items(id int primary key, name text not null); \
     INSERT INTO items SELECT g, 'item' || g FROM generate_series(1, 1000) g";

/// A fast shape five times as often as a slow one, until dropped: sorted by calls the lookup
/// comes first, by p95 the sleep does.
struct Traffic {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Traffic {
    fn start(served: &AppUnderTest) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let conn = served.via();
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let client = support::client::tokio_connect(&conn).await;
                let mut i = 0;
                while !flag.load(Ordering::Relaxed) {
                    i += 1;
                    for _ in 0..5 {
                        let sql = format!("SELECT name FROM items WHERE id = {}", i % 1000 + 1);
                        client.simple_query(&sql).await.unwrap();
                    }
                    client.simple_query("SELECT pg_sleep(0.02)").await.unwrap();
                }
            });
        });
        Traffic {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A tmux server of this test's own (`-L`), killed on drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn cmd(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .args(["-L", &self.socket])
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("tmux not runnable ({e}); install it: apt-get install tmux"))
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.cmd(args);
        assert!(
            out.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn screen(&self) -> String {
        self.ok(&["capture-pane", "-p", "-t", "top"])
    }

    /// The screen once `ready` holds for it (30 s at most: the machine is shared and slow).
    fn wait_screen(&self, what: &str, ready: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let screen = self.screen();
            if ready(&screen) {
                return screen;
            }
            assert!(Instant::now() < deadline, "never {what}; screen:\n{screen}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd(&["kill-server"]);
    }
}

/// Whether `first` is on a line above `second` in the table (the first occurrences: the
/// bottom pane repeats the selected shape's SQL below the table).
fn above(screen: &str, first: &str, second: &str) -> bool {
    let line = |needle: &str| screen.lines().position(|l| l.contains(needle));
    matches!((line(first), line(second)), (Some(a), Some(b)) if a < b)
}

const FAST: &str = "SELECT name FROM items WHERE id = $1";
const SLOW: &str = "SELECT pg_sleep($1)";

#[test]
fn top_in_a_terminal_sorts_filters_and_quits() {
    let served = AppUnderTest::start(SCHEMA);
    let _traffic = Traffic::start(&served);
    let tmux = Tmux {
        socket: format!("pgshape-top-test-{}", std::process::id()),
    };
    // The shell prints top's exit status after it: tmux's own #{pane_dead_status} is
    // sometimes left empty for a pane whose program has exited.
    let command = format!(
        "{} top --admin {} --interval 0.5; echo top-exited-with=$?; sleep 600",
        env!("CARGO_BIN_EXE_pgshape"),
        served.admin_url()
    );
    tmux.ok(&[
        "new-session",
        "-d",
        "-s",
        "top",
        "-x",
        "200",
        "-y",
        "40",
        &command,
    ]);

    let screen = tmux.wait_screen("both shapes with per-second figures", |s| {
        s.contains("sort: total time") && s.contains(FAST) && s.contains(SLOW)
    });
    assert!(
        screen.contains("CALLS/S") && screen.contains("P95 ms"),
        "{screen}"
    );
    assert!(screen.contains("rule hits:"), "{screen}");

    tmux.ok(&["send-keys", "-t", "top", "c"]);
    tmux.wait_screen("sorted by calls, the lookup first", |s| {
        s.contains("sort: calls") && above(s, FAST, SLOW)
    });
    tmux.ok(&["send-keys", "-t", "top", "p"]);
    tmux.wait_screen("sorted by p95, the sleep first", |s| {
        s.contains("sort: p95") && above(s, SLOW, FAST)
    });
    // `d` filters by the first database seen: this test's, the only one with traffic.
    tmux.ok(&["send-keys", "-t", "top", "d"]);
    let db = served.db.dbname.clone();
    tmux.wait_screen("filtered to the test database", |s| {
        s.contains(&format!("database: {db} ")) && s.contains(SLOW)
    });

    tmux.ok(&["send-keys", "-t", "top", "q"]);
    tmux.wait_screen("top exits with status 0 on q", |s| {
        s.contains("top-exited-with=0")
    });
}

fn top(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pgshape"))
        .arg("top")
        .args(args)
        .output()
        .expect("run pgshape top")
}

#[test]
fn once_prints_a_table_or_json_over_a_pipe() {
    let served = AppUnderTest::start(SCHEMA);
    let _traffic = Traffic::start(&served);
    let admin = served.admin_url();
    let db = served.db.dbname.clone();
    served.wait_calls(12);

    let out = top(&[
        "--admin",
        &admin,
        "--once",
        "--interval",
        "0.5",
        "--database",
        &db,
    ]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("pgshape top: "), "{table}");
    assert!(lines[1].starts_with("FINGERPRINT") && lines[1].ends_with("QUERY"));
    assert!(lines.iter().any(|l| l.ends_with(FAST)), "{table}");
    assert!(lines.iter().any(|l| l.ends_with(SLOW)), "{table}");

    let out = top(&[
        "--admin",
        &admin,
        "--format",
        "json",
        "--interval",
        "0.5",
        "--sort",
        "calls",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["sort"], "calls");
    let shapes = json["shapes"].as_array().unwrap();
    let fast = shapes
        .iter()
        .find(|s| s["query"] == FAST)
        .expect("fast shape");
    let slow = shapes
        .iter()
        .find(|s| s["query"] == SLOW)
        .expect("slow shape");
    let calls = |s: &serde_json::Value, part: &str| s[part]["calls"].as_u64().unwrap();
    // Traffic ran through the whole interval: its calls are the difference of two polls.
    assert!(calls(fast, "interval") > 0, "{json}");
    assert!(calls(fast, "cumulative") >= calls(fast, "interval"));
    assert!(calls(fast, "interval") >= calls(slow, "interval"), "{json}");
    assert_eq!(shapes[0]["query"], FAST, "sorted by calls: {json}");

    // The live view needs a terminal, and says what to use instead.
    let out = top(&["--admin", &admin]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--once"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

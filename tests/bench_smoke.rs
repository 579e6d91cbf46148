//! `bench/run --smoke` end to end with this build's pgshape: the benchmark harness starts its
//! own PostgreSQL, pgbouncer and both pgshape configurations, runs every workload against every
//! target once, and writes a report whose every cell holds real measurements. Nothing here is
//! timed: how fast pgshape is belongs to the report, not to a test on a shared machine.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use support::pgbin::PgBin;

const TARGETS: [&str; 4] = ["direct", "pgbouncer", "pgshape", "pgshape-noinspect"];
const PROXIES: [&str; 3] = ["pgbouncer", "pgshape", "pgshape-noinspect"];
const WORKLOADS: [&str; 8] = [
    "select-simple",
    "select-extended",
    "select-prepared",
    "tpcb",
    "incident",
    "shapes",
    "large",
    "churn",
];

fn pgbouncer_present() -> bool {
    Path::new("/usr/sbin/pgbouncer").is_file()
        || std::env::var_os("PATH")
            .is_some_and(|path| std::env::split_paths(&path).any(|d| d.join("pgbouncer").is_file()))
}

#[test]
fn smoke_run_measures_every_workload_through_every_target() {
    // Missing tools fail the test with the command that installs them: a skipped benchmark
    // test would let a broken harness through.
    let bindir = &PgBin::get().bindir;
    assert!(
        pgbouncer_present(),
        "pgbouncer not found: apt-get install -y pgbouncer (.ci/run does)"
    );
    let out_dir = tempfile::tempdir().unwrap();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("bench/run");
    let out = Command::new(&script)
        .arg("--smoke")
        .arg("--out")
        .arg(out_dir.path())
        .args(["--pgshape-bin", env!("CARGO_BIN_EXE_pgshape")])
        .env("PGSHAPE_PG_BINDIR", bindir)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {} ({e}); it needs python3 (apt-get install -y python3)",
                script.display()
            )
        });
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "bench/run --smoke failed ({}):\n{stderr}\n{stdout}",
        out.status
    );

    let md = std::fs::read_to_string(out_dir.path().join("latest.md")).expect("latest.md");
    assert!(md.contains("## Throughput and latency"), "{md}");
    assert!(
        md.contains("## CPU per statement"),
        "no CPU table in the report:\n{md}"
    );
    assert_eq!(stdout.trim(), md.trim(), "stdout is the Markdown report");

    let json: Value = serde_json::from_str(
        &std::fs::read_to_string(out_dir.path().join("latest.json")).expect("latest.json"),
    )
    .expect("latest.json parses");
    for key in [
        "date",
        "git_commit",
        "nproc",
        "cpu_model",
        "kernel",
        "postgres",
        "pgbouncer",
    ] {
        assert!(
            json["meta"][key].as_str().is_some() || json["meta"][key].as_u64().is_some(),
            "meta.{key} missing: {}",
            json["meta"]
        );
    }

    let cells = json["cells"].as_array().expect("cells");
    let samples = json["samples"].as_array().expect("samples");
    for workload in WORKLOADS {
        for target in TARGETS {
            let cell = cells
                .iter()
                .find(|c| c["workload"] == workload && c["target"] == target)
                .unwrap_or_else(|| panic!("no cell for {workload} via {target}"));
            let median = &cell["median"];
            let num = |key: &str| median[key].as_f64().unwrap_or(0.0);
            assert!(num("tps") > 0.0, "{workload} via {target}: {median}");
            assert!(num("statements") > 0.0, "{workload} via {target}: {median}");
            if PROXIES.contains(&target) {
                // CPU per statement comes from the proxy's own /proc entries; zero would mean
                // the harness sampled the wrong process (e.g. pgbouncer's runuser wrapper).
                assert!(num("cpu_us") > 0.0, "{workload} via {target}: {median}");
                assert!(median["vcsw"].as_f64().is_some(), "{median}");
                assert!(num("hwm_kib") > 0.0, "{median}");
            }
            assert!(
                samples
                    .iter()
                    .any(|s| s["workload"] == workload && s["target"] == target),
                "no raw sample for {workload} via {target}"
            );
        }
    }
    let large = cells
        .iter()
        .find(|c| c["workload"] == "large" && c["target"] == "direct")
        .unwrap();
    assert!(large["median"]["mb_per_s"].as_f64().unwrap_or(0.0) > 0.0);

    // Idle connections: a fresh instance of every proxy measured.
    for target in PROXIES {
        let idle = &json["idle"]["median"][target];
        assert!(
            idle["base_kib"].as_f64().unwrap_or(0.0) > 0.0,
            "idle {target}: {}",
            json["idle"]
        );
        assert!(idle["idle_kib_per_conn"].as_f64().is_some(), "{idle}");
    }
    // The shapes were fed through both pgshape configurations before the timed runs.
    for target in ["pgshape", "pgshape-noinspect"] {
        let warm = &json["shapes_warmup"][target];
        assert!(
            warm["cpu_us_per_shape"].as_f64().unwrap_or(0.0) > 0.0,
            "{target}: {warm}"
        );
    }
    assert!(
        !json["targets"].as_array().expect("targets").is_empty(),
        "the issue's targets are evaluated"
    );
}

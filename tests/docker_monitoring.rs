//! The container stack of docker/, checked without a Docker engine (CI machines have none):
//!
//! - the compose file through `docker-compose config`, and its wiring: what each service mounts
//!   is what the others' configuration reads (Prometheus' rules, Grafana's provisioning and
//!   dashboard path, the init script, the load generator), ports and host names agree;
//! - the Prometheus configuration and rules through promtool (and the rules' unit tests);
//! - the Kubernetes sidecar example, parsed and checked for probes, scrape annotations, the
//!   token's Secret, and rule files that `pgshape check --rules` loads;
//! - the image's HEALTHCHECK command, run natively with busybox against a real pgshape;
//! - and the stack's own configuration run natively end to end: the init script in a real
//!   PostgreSQL, two pgshape instances in front of it (two sidecars), the load generator's
//!   script through both, a real Prometheus with docker/prometheus/prometheus.yml scraping both
//!   and evaluating the rules, and every dashboard query answered with data, aggregated across
//!   the instances without double counting.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use pgshape::app::App;
use pgshape::config::{Config, Secret};
use serde_json::Value;
use serde_norway::Value as Yaml;
use support::client::{ConnParams, run_with_timeout};
use support::prometheus::PrometheusServer;
use support::{PgCluster, http_request, psql, psql_query};

fn docker(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("docker")
        .join(path)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn yaml(text: &str) -> Yaml {
    serde_norway::from_str(text).unwrap_or_else(|e| panic!("not YAML ({e}):\n{text}"))
}

/// The documents of a multi-document YAML file.
fn yaml_documents(path: &Path) -> Vec<Yaml> {
    use serde::Deserialize;
    serde_norway::Deserializer::from_str(&read(path))
        .map(|doc| Yaml::deserialize(doc).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .collect()
}

fn text(v: &Yaml) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v:?}"))
}

fn promtool(args: &[&str], dir: &Path) -> String {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| {
            panic!("promtool not runnable ({e}): apt-get install -y prometheus (.ci/run does)")
        });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?}:\n{text}");
    text
}

/// `KEY=value` of the runtime image's `ENV`.
fn dockerfile_env(key: &str) -> String {
    let dockerfile = read(&docker("Dockerfile"));
    let at = dockerfile
        .find(&format!("{key}="))
        .unwrap_or_else(|| panic!("no {key} in the Dockerfile"));
    dockerfile[at + key.len() + 1..]
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

fn port_of(addr: &str) -> &str {
    addr.rsplit(':').next().unwrap()
}

#[test]
fn prometheus_config_and_rules_pass_promtool_and_their_unit_tests() {
    let dir = docker("prometheus");
    let checked = promtool(&["check", "config", "prometheus.yml"], &dir);
    assert!(checked.contains("1 rule files found"), "{checked}");
    let checked = promtool(&["check", "rules", "pgshape-rules.yml"], &dir);
    assert!(checked.contains("SUCCESS"), "{checked}");
    let tested = promtool(&["test", "rules", "pgshape-rules.test.yml"], &dir);
    assert!(tested.contains("SUCCESS"), "{tested}");
}

/// A service's mounts as (host path, container path).
fn mounts(service: &Yaml) -> Vec<(PathBuf, String)> {
    service["volumes"]
        .as_sequence()
        .into_iter()
        .flatten()
        .map(|v| match v {
            // docker-compose 1.x prints `source:target[:mode]`, 2.x the long form.
            Yaml::String(s) => {
                let mut parts = s.split(':');
                let source = PathBuf::from(parts.next().unwrap());
                (source, parts.next().unwrap().to_owned())
            }
            long => (
                PathBuf::from(text(&long["source"])),
                text(&long["target"]).to_owned(),
            ),
        })
        .collect()
}

fn mounted(service: &Yaml, host: &Path) -> String {
    mounts(service)
        .into_iter()
        .find(|(source, _)| source == host)
        .unwrap_or_else(|| panic!("{} is not mounted: {service:?}", host.display()))
        .1
}

fn env<'a>(service: &'a Yaml, key: &str) -> &'a str {
    service["environment"][key]
        .as_str()
        .unwrap_or_else(|| panic!("no {key} in {service:?}"))
}

fn words(v: &Yaml) -> Vec<&str> {
    v.as_sequence().unwrap().iter().map(text).collect()
}

#[test]
fn compose_file_is_valid_and_its_services_agree() {
    let compose = docker("compose.yaml");
    let run = |args: &[&str]| {
        let out = Command::new("docker-compose")
            .arg("-f")
            .arg(&compose)
            .args(args)
            .output()
            .unwrap_or_else(|e| {
                panic!(
                    "docker-compose not runnable ({e}): apt-get install -y docker-compose \
                     (.ci/run does)"
                )
            });
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "docker-compose {args:?}:\n{err}");
        String::from_utf8(out.stdout).unwrap()
    };
    run(&["config", "-q"]);
    let config = yaml(&run(&["config"]));
    let services = &config["services"];
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let admin_port = port_of(&dockerfile_env("PGSHAPE_ADMIN")).to_owned();
    let listen_port = port_of(&dockerfile_env("PGSHAPE_LISTEN")).to_owned();

    // PostgreSQL with pg_stat_statements loaded, and the shop created by the init script.
    let postgres = &services["postgres"];
    assert!(
        words(&postgres["command"]).contains(&"shared_preload_libraries=pg_stat_statements"),
        "{postgres:?}"
    );
    assert_eq!(
        mounted(postgres, &docker("postgres")),
        "/docker-entrypoint-initdb.d"
    );
    assert!(
        read(&docker("postgres/10-shop.sql"))
            .contains("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    );

    // pgshape from docker/Dockerfile, in front of it, with the catalog connection and a token.
    let pgshape = &services["pgshape"];
    assert_eq!(Path::new(text(&pgshape["build"]["context"])), root);
    assert_eq!(text(&pgshape["build"]["dockerfile"]), "docker/Dockerfile");
    assert_eq!(env(pgshape, "PGSHAPE_UPSTREAM"), "postgres:5432");
    assert!(env(pgshape, "PGSHAPE_SCHEMA_DSN").contains("host=postgres"));
    assert!(!env(pgshape, "PGSHAPE_ADMIN_TOKEN").is_empty());
    let ports = words(&pgshape["ports"]).join(" ");
    assert!(
        ports.contains(&format!(":{admin_port}:{admin_port}"))
            && ports.contains(&format!(":{listen_port}:{listen_port}")),
        "{ports}"
    );

    // Prometheus: exemplar storage, docker/prometheus as its config directory, and that
    // config's target is pgshape's admin port; its rule files are in the mounted directory.
    let prometheus = &services["prometheus"];
    let flags = words(&prometheus["command"]);
    assert!(
        flags.contains(&"--enable-feature=exemplar-storage"),
        "{flags:?}"
    );
    let config_dir = mounted(prometheus, &docker("prometheus"));
    assert!(
        flags.contains(&format!("--config.file={config_dir}/prometheus.yml").as_str()),
        "{flags:?}"
    );
    let prometheus_yml = yaml(&read(&docker("prometheus/prometheus.yml")));
    let job = &prometheus_yml["scrape_configs"][0];
    assert_eq!(
        text(&job["job_name"]),
        "pgshape",
        "the rules' PgshapeDown asks for this job"
    );
    assert_eq!(
        words(&job["static_configs"][0]["targets"]),
        [format!("pgshape:{admin_port}")]
    );
    for rules in words(&prometheus_yml["rule_files"]) {
        assert!(docker("prometheus").join(rules).is_file(), "{rules}");
    }

    // Grafana: anonymous viewers, the provisioning directory, the data source pointing at the
    // Prometheus service, and the dashboard mounted where the provider reads dashboards.
    let grafana = &services["grafana"];
    assert_eq!(env(grafana, "GF_AUTH_ANONYMOUS_ENABLED"), "true");
    assert_eq!(env(grafana, "GF_AUTH_ANONYMOUS_ORG_ROLE"), "Viewer");
    let provisioning = mounted(grafana, &docker("grafana/provisioning"));
    assert_eq!(provisioning, "/etc/grafana/provisioning");
    let datasources = yaml(&read(&docker(
        "grafana/provisioning/datasources/prometheus.yml",
    )));
    let source = &datasources["datasources"][0];
    assert_eq!(text(&source["type"]), "prometheus");
    assert_eq!(source["isDefault"], Yaml::Bool(true));
    assert_eq!(text(&source["url"]), "http://prometheus:9090");
    assert!(flags.iter().all(|f| !f.starts_with("--web.listen-address")));
    let providers = yaml(&read(&docker(
        "grafana/provisioning/dashboards/pgshape.yml",
    )));
    let provider_dir = text(&providers["providers"][0]["options"]["path"]);
    let dashboard = mounted(grafana, &docker("grafana/pgshape-dashboard.json"));
    assert_eq!(
        Path::new(&dashboard).parent().unwrap(),
        Path::new(provider_dir)
    );
    assert_eq!(
        env(grafana, "GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"),
        dashboard
    );
    // The dashboard's data source variable picks the provisioned (default) Prometheus.
    let json: Value =
        serde_json::from_str(&read(&docker("grafana/pgshape-dashboard.json"))).unwrap();
    let variable = &json["templating"]["list"][0];
    assert_eq!(
        (variable["type"].as_str(), variable["query"].as_str()),
        (Some("datasource"), Some("prometheus"))
    );

    // The load generator runs the scripts of docker/loadgen through pgshape.
    let loadgen = &services["loadgen"];
    let dir = mounted(loadgen, &docker("loadgen"));
    assert_eq!(words(&loadgen["entrypoint"]), [format!("{dir}/run.sh")]);
    assert_eq!(env(loadgen, "PGHOST"), "pgshape");
    assert_eq!(env(loadgen, "PGPORT"), listen_port);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(docker("loadgen/run.sh"))
        .unwrap()
        .permissions()
        .mode();
    assert!(mode & 0o111 != 0, "run.sh must be executable: {mode:o}");
}

#[test]
fn kubernetes_sidecar_has_probes_annotations_the_secret_and_loadable_rules() {
    let docs = yaml_documents(&docker("k8s/sidecar.yaml"));
    let kind = |k: &str| {
        docs.iter()
            .find(|d| d["kind"].as_str() == Some(k))
            .unwrap_or_else(|| panic!("no {k} in sidecar.yaml"))
    };
    let deployment = kind("Deployment");
    let config_map = kind("ConfigMap");
    let pod = &deployment["spec"]["template"];
    assert_eq!(
        pod["metadata"]["labels"],
        deployment["spec"]["selector"]["matchLabels"]
    );
    let containers = pod["spec"]["containers"].as_sequence().unwrap();
    assert!(containers.len() >= 2, "the app and pgshape");
    let pgshape = containers
        .iter()
        .find(|c| c["name"].as_str() == Some("pgshape"))
        .expect("a pgshape container");
    let app = containers
        .iter()
        .find(|c| c["name"].as_str() != Some("pgshape"))
        .unwrap();
    let var = |c: &Yaml, name: &str| -> Yaml {
        c["env"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|e| e["name"].as_str() == Some(name))
            .unwrap_or_else(|| panic!("no {name} in {c:?}"))
            .clone()
    };

    // The app reaches its sidecar on the pod's loopback, where pgshape listens.
    let listen = var(pgshape, "PGSHAPE_LISTEN");
    assert!(text(&listen["value"]).starts_with("127.0.0.1:"));
    assert!(
        text(&var(app, "DATABASE_URL")["value"]).contains(text(&listen["value"])),
        "{app:?}"
    );

    // The token from a Secret, never a literal.
    let token = var(pgshape, "PGSHAPE_ADMIN_TOKEN");
    assert!(token.get("value").is_none());
    let secret = &token["valueFrom"]["secretKeyRef"];
    assert!(!text(&secret["name"]).is_empty() && !text(&secret["key"]).is_empty());

    // Probes and scrape annotations on the admin port.
    let admin_port = port_of(text(&var(pgshape, "PGSHAPE_ADMIN")["value"])).to_owned();
    let port = pgshape["ports"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|p| p["containerPort"].as_u64().map(|n| n.to_string()) == Some(admin_port.clone()))
        .expect("the admin port declared");
    for (probe, path) in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")] {
        let get = &pgshape[probe]["httpGet"];
        assert_eq!(text(&get["path"]), path, "{probe}");
        assert_eq!(get["port"], port["name"], "{probe}");
    }
    let annotations = &pod["metadata"]["annotations"];
    assert_eq!(text(&annotations["prometheus.io/scrape"]), "true");
    assert_eq!(text(&annotations["prometheus.io/port"]), admin_port);
    assert_eq!(text(&annotations["prometheus.io/path"]), "/metrics");
    assert_eq!(pgshape["securityContext"]["runAsNonRoot"], Yaml::Bool(true));

    // The rules come from the ConfigMap, mounted where `--rules` points.
    let args = words(&pgshape["args"]);
    let rules_dir = args[args.iter().position(|a| *a == "--rules").unwrap() + 1];
    let mount = pgshape["volumeMounts"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|m| m["mountPath"].as_str() == Some(rules_dir))
        .expect("the rules directory mounted");
    let volume = pod["spec"]["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|v| v["name"] == mount["name"])
        .unwrap();
    assert_eq!(volume["configMap"]["name"], config_map["metadata"]["name"]);

    // Those rule files load, and catch the incident and a DELETE without WHERE.
    let dir = tempfile::tempdir().unwrap();
    for (name, body) in config_map["data"].as_mapping().unwrap() {
        std::fs::write(dir.path().join(text(name)), text(body)).unwrap();
    }
    let mut check = Command::new(env!("CARGO_BIN_EXE_pgshape"));
    check
        .args(["check", "--format", "json", "--rules"])
        .arg(dir.path())
        .arg("-");
    let sql = format!("{};\nDELETE FROM shop_order;\n", support::shop::INCIDENT);
    let out = run_with_timeout(check, Some(sql.as_bytes()), Duration::from_secs(60));
    assert!(out.stderr.is_empty(), "{}", out.stderr);
    for rule in [
        "distinct-over-fanout-join",
        "update-or-delete-without-where",
    ] {
        assert!(out.stdout.contains(rule), "{rule}: {}", out.stdout);
    }
}

/// The image's HEALTHCHECK command, as its shell runs it.
fn healthcheck_command() -> String {
    let dockerfile = read(&docker("Dockerfile")).replace("\\\n", " ");
    assert!(
        dockerfile
            .lines()
            .filter(|l| l.starts_with("FROM "))
            .count()
            >= 2,
        "multi-stage"
    );
    let user = dockerfile
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("a USER");
    assert!(!["root", "0"].contains(&user.trim()), "runs as {user}");
    let line = dockerfile
        .lines()
        .find(|l| l.starts_with("HEALTHCHECK "))
        .expect("a HEALTHCHECK");
    line.split_once(" CMD ")
        .expect("HEALTHCHECK ... CMD")
        .1
        .trim()
        .to_owned()
}

#[test]
fn image_healthcheck_follows_readyz() {
    let command = healthcheck_command();
    assert!(command.contains("/readyz"), "{command}");
    let probe = |admin: std::net::SocketAddr| {
        // As in the image: PGSHAPE_ADMIN from its ENV, run by /bin/sh.
        let out = Command::new("sh")
            .args(["-c", &command])
            .env("PGSHAPE_ADMIN", format!("0.0.0.0:{}", admin.port()))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !err.contains("not found"),
            "{err}: the HEALTHCHECK needs busybox: apt-get install -y busybox (.ci/run does)"
        );
        out.status.success()
    };
    let cluster = PgCluster::shared();
    let up = App::start(support::app_config(cluster)).expect("pgshape starts");
    assert!(
        probe(up.admin_addr().unwrap()),
        "healthy with PostgreSQL reachable"
    );
    let down = App::start(Config {
        upstream: support::serve::free_addr().to_string(),
        ..support::app_config(cluster)
    })
    .expect("pgshape starts");
    assert!(
        !probe(down.admin_addr().unwrap()),
        "unhealthy without PostgreSQL"
    );
    up.shutdown();
    down.shutdown();
}

/// Every PromQL expression of the dashboard, with Grafana's variables given values.
fn dashboard_queries() -> Vec<(String, String)> {
    let dashboard: Value = serde_json::from_str(&read(&docker("grafana/pgshape-dashboard.json")))
        .expect("the dashboard is JSON");
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().unwrap();
            let expr = expr
                .replace("$__rate_interval", "1m")
                .replace("$database", ".*");
            assert!(!expr.contains('$'), "unknown variable in {expr}");
            out.push((panel["title"].as_str().unwrap().to_owned(), expr));
        }
    }
    assert!(out.len() >= 10, "{out:?}");
    out
}

/// docker/prometheus/prometheus.yml with only what differs outside the containers: the
/// targets (these pgshapes' admin addresses instead of `pgshape:9187`), one-second intervals,
/// and the rule files' absolute paths.
fn stack_prometheus_config(targets: &[std::net::SocketAddr]) -> String {
    let mut config = yaml(&read(&docker("prometheus/prometheus.yml")));
    for interval in ["scrape_interval", "scrape_timeout", "evaluation_interval"] {
        config["global"][interval] = Yaml::from("1s");
    }
    let rules: Vec<Yaml> = words(&config["rule_files"])
        .into_iter()
        .map(|f| Yaml::from(docker("prometheus").join(f).to_str().unwrap()))
        .collect();
    config["rule_files"] = Yaml::Sequence(rules);
    let jobs = config["scrape_configs"].as_sequence_mut().unwrap();
    assert_eq!(jobs.len(), 1, "one job: pgshape");
    jobs[0]["static_configs"][0]["targets"] =
        Yaml::Sequence(targets.iter().map(|t| Yaml::from(t.to_string())).collect());
    serde_norway::to_string(&config).unwrap()
}

const TOKEN: &str = "test-admin-token";

/// The load generator's script, one short round through `via`.
fn loadgen_round(via: &ConnParams) {
    let mut cmd = Command::new(docker("loadgen/run.sh"));
    via.apply_env(&mut cmd);
    let bindir = &support::pgbin::PgBin::get().bindir;
    cmd.env(
        "PATH",
        format!("{}:{}", bindir.display(), std::env::var("PATH").unwrap()),
    )
    .env("LOADGEN_ROUNDS", "1")
    .env("LOADGEN_SECONDS", "2")
    .env("LOADGEN_RATE", "25");
    let out = run_with_timeout(cmd, None, Duration::from_secs(120));
    out.assert_success();
    assert!(
        !out.stderr.contains("failed") && out.stdout.contains("number of failed transactions: 0"),
        "{}\n{}",
        out.stdout,
        out.stderr
    );
}

#[test]
fn the_stacks_configuration_runs_natively_with_two_pgshape_instances() {
    let cluster = PgCluster::shared();
    let db = cluster.fresh_database();
    let init = docker("postgres/10-shop.sql");
    psql(
        &db,
        &["-q", "-v", "orders=2000", "-f", init.to_str().unwrap()],
        None,
    )
    .assert_success();

    // Two instances in front of the same database, as two sidecars: same rules, catalog
    // connection and token.
    let start = || {
        let mut config = support::app_config(cluster);
        config.rules.schema_dsn = Some(db.dsn());
        config.admin_token = Some(Secret::new(TOKEN.to_owned()));
        App::start(config).expect("pgshape starts")
    };
    let (a, b) = (start(), start());
    let admins = [a.admin_addr().unwrap(), b.admin_addr().unwrap()];
    let (via_a, via_b) = (db.via(a.proxy_addr()), db.via(b.proxy_addr()));
    let prometheus = PrometheusServer::start_with_config(&stack_prometheus_config(&admins));

    // Every shape and its series exist before what the rules look at: rate() and increase()
    // need a sample before the increase. The incident's DISTINCT goes through both instances
    // with IN lists of different lengths: one shape, possibly two sample texts.
    loadgen_round(&via_a);
    loadgen_round(&via_b);
    let distinct = |skus: &str| {
        format!(
            "SELECT DISTINCT o.id, o.status FROM shop_order o \
             JOIN shop_orderitem i ON i.order_id = o.id WHERE i.sku IN ({skus}) LIMIT 5"
        )
    };
    psql_query(&via_a, &distinct("'SKU-1'"));
    psql_query(&via_b, &distinct("'SKU-1', 'SKU-2', 'SKU-3'"));
    psql_query(&via_a, "SELECT pg_sleep(0) /*slo*/");
    let queries = |admin| -> Vec<Value> {
        let body = http_request(admin, "GET", "/api/queries?limit=500", &[]).body;
        serde_json::from_str::<Value>(&body)
            .unwrap()
            .as_array()
            .unwrap()
            .clone()
    };
    let fingerprint = |needle: &str| {
        let rows = queries(admins[0]);
        rows.iter()
            .find(|r| r["query"].as_str().unwrap().contains(needle))
            .unwrap_or_else(|| panic!("no {needle} in {rows:#?}"))["fingerprint"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let slow_fp = fingerprint("pg_sleep");
    let distinct_fp = fingerprint("o.status FROM shop_order o");
    let incident_fp = fingerprint("\"shop_orderitem\".\"sku\" IN");
    let both_up = "count(up{job=\"pgshape\"} == 1) == 2";
    let scraped = format!("pgshape_query_calls_total{{fingerprint=\"{slow_fp}\"}}");
    prometheus.wait_for(Duration::from_secs(60), "both targets scraped", |p| {
        let up = p.query(both_up)?;
        let calls = p.query(&scraped)?;
        (!up["data"]["result"].as_array()?.is_empty()
            && !calls["data"]["result"].as_array()?.is_empty())
        .then_some(())
    });

    // A counter's first sample is no increase: the workload runs again after the scrape, the
    // slow shape once over the 3 s SLO, and a rule reload for the reload panel.
    loadgen_round(&via_a);
    loadgen_round(&via_b);
    psql_query(&via_b, &distinct("'SKU-4', 'SKU-5'"));
    let slow_started = Instant::now();
    psql_query(&via_a, "SELECT pg_sleep(3.1) /*slo*/");
    assert!(slow_started.elapsed() >= Duration::from_secs(3));
    let bearer = format!("Bearer {TOKEN}");
    let reload = http_request(
        admins[1],
        "POST",
        "/api/reload",
        &[("Authorization", &bearer)],
    );
    assert_eq!(reload.status, 200, "{}", reload.body);

    // The recording rule over both instances: the increase in its window is the slow call
    // alone, in the (3 s, 5 s] bucket, so p95 interpolates to 3 + 2 * 0.95 = 4.9 s.
    let p95_query = format!("pgshape:query_duration_seconds:p95_5m{{fingerprint=\"{slow_fp}\"}}");
    let p95 = prometheus.wait_for(Duration::from_secs(30), "p95 above 3 s", |p| {
        let answer = p.query(&p95_query)?;
        let v: f64 = answer["data"]["result"][0]["value"][1]
            .as_str()?
            .parse()
            .ok()?;
        (v > 3.0).then_some(v)
    });
    assert!(p95 <= 5.0, "p95 {p95}");

    // The alerts: the SLO one pending (for: 10m) with the shape's SQL, the DISTINCT one firing
    // once per shape however many instances saw it.
    let alerts = prometheus.wait_for(Duration::from_secs(30), "both alerts", |p| {
        let answer = p.get("/api/v1/alerts")?;
        let alerts = answer["data"]["alerts"].as_array()?.clone();
        let has = |name: &str| alerts.iter().any(|a| a["labels"]["alertname"] == name);
        (has("PgshapeQueryShapeSlow") && has("PgshapeDistinctOverFanoutJoin")).then_some(alerts)
    });
    let named = |name: &str| -> Vec<&Value> {
        alerts
            .iter()
            .filter(|a| a["labels"]["alertname"] == name)
            .collect()
    };
    let slow = named("PgshapeQueryShapeSlow");
    assert_eq!(slow.len(), 1, "{slow:#?}");
    assert_eq!(slow[0]["state"], "pending", "{:#}", slow[0]);
    assert_eq!(slow[0]["labels"]["fingerprint"], slow_fp.as_str());
    assert_eq!(slow[0]["labels"]["database"], db.dbname.as_str());
    assert!(
        slow[0]["labels"]["query"]
            .as_str()
            .is_some_and(|q| q.contains("pg_sleep")),
        "{:#}",
        slow[0]
    );
    let fanout = named("PgshapeDistinctOverFanoutJoin");
    let fanout_fps: Vec<&str> = fanout
        .iter()
        .map(|a| a["labels"]["fingerprint"].as_str().unwrap())
        .collect();
    assert!(
        fanout_fps.contains(&distinct_fp.as_str()) && fanout_fps.contains(&incident_fp.as_str()),
        "{fanout:#?}"
    );
    let mut unique = fanout_fps.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(
        unique.len(),
        fanout_fps.len(),
        "one alert per shape: {fanout:#?}"
    );
    assert!(fanout.iter().all(|a| a["state"] == "firing"), "{fanout:#?}");
    assert!(
        alerts.iter().all(|a| !matches!(
            a["labels"]["alertname"].as_str(),
            Some("PgshapeUpstreamUnreachable" | "PgshapeDown" | "PgshapeQueryShapeFailing")
        )),
        "{alerts:#?}"
    );

    // Every dashboard query answers with data, one series per shape (never one per instance).
    for (title, expr) in dashboard_queries() {
        let answer = prometheus.query(&expr).expect("Prometheus answers");
        assert_eq!(answer["status"], "success", "{title}: {expr}\n{answer:#}");
        let result = answer["data"]["result"].as_array().unwrap();
        assert!(!result.is_empty(), "{title}: no data for {expr}");
        let mut seen = std::collections::BTreeSet::new();
        for series in result {
            let mut labels = series["metric"].as_object().unwrap().clone();
            assert!(
                !labels.contains_key("instance"),
                "{title}: per instance: {series}"
            );
            labels.remove("query");
            assert!(
                seen.insert(format!("{labels:?}")),
                "{title}: twice {labels:?}\n{answer:#}"
            );
        }
        if title.starts_with("Busiest shapes") || title.starts_with("p95 latency") {
            let shown: Vec<&str> = result
                .iter()
                .filter_map(|s| s["metric"]["fingerprint"].as_str())
                .collect();
            for fp in [&slow_fp, &distinct_fp, &incident_fp] {
                assert!(
                    shown.contains(&fp.as_str()),
                    "{title}: no {fp} in {shown:?}"
                );
            }
        }
    }

    // Summed across the instances, the calls are the two instances' own counts: nothing double
    // counted, nothing lost. Prometheus scrapes once more first.
    let mut expected: BTreeMap<String, f64> = BTreeMap::new();
    for admin in admins {
        for row in queries(admin) {
            *expected
                .entry(row["fingerprint"].as_str().unwrap().to_owned())
                .or_default() += row["calls"].as_f64().unwrap();
        }
    }
    let sums = format!(
        "sum by (fingerprint) (pgshape_query_calls_total{{fingerprint=~\"{incident_fp}|{distinct_fp}\"}})"
    );
    prometheus.wait_for(
        Duration::from_secs(30),
        "the calls of both instances",
        |p| {
            let answer = p.query(&sums)?;
            let result = answer["data"]["result"].as_array()?;
            (result.len() == 2
                && result.iter().all(|s| {
                    let fp = s["metric"]["fingerprint"].as_str().unwrap();
                    s["value"][1].as_str().and_then(|v| v.parse::<f64>().ok())
                        == expected.get(fp).copied()
                }))
            .then_some(())
        },
    );
    a.shutdown();
    b.shutdown();
}

//! The container stack of docker/ as written, checked without a Docker engine (CI machines have
//! none):
//!
//! - the compose file through `docker-compose config`, and its wiring: what each service mounts
//!   is what the others' configuration reads (Prometheus' config and rules, Grafana's
//!   provisioning and dashboard path, the init script, the load generator), ports and host
//!   names agree;
//! - the Kubernetes sidecar example, parsed and checked for probes, scrape annotations, the
//!   token's Secret, and rule files that `pgshape check --rules` loads;
//! - the image's HEALTHCHECK command, run natively with busybox against a real pgshape.
//!
//! tests/docker_monitoring.rs runs the stack's configuration.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use pgshape::app::App;
use pgshape::config::Config;
use serde_json::Value;
use serde_norway::Value as Yaml;
use support::PgCluster;
use support::client::run_with_timeout;
use support::docker::{docker, dockerfile_env, port_of, read, text, words, yaml, yaml_documents};

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

//! `ligand.toml` with embedded defaults: what starts, what refuses to, and the messages.
#![allow(clippy::unwrap_used, reason = "tests")]

use std::path::Path;

use ligand::config::{ConfigError, Environment, load_from};
use ligand::{InitError, ProviderKind, State};

const POLICY: &str = "package ligand.authz\n\ndefault allow := false\n";

/// `ligand.toml` in `dir`, required, without environment overrides but the development folder
/// (inside `dir`, so that tests leave the user's own alone).
fn load(dir: &Path) -> Result<ligand::Config, ConfigError> {
    load_from(&dir.join("ligand.toml"), true, &dev_env(dir))
}

/// No environment overrides but `LIGAND_DEV_DIR`, in `dir`.
fn dev_env(dir: &Path) -> Environment {
    Environment {
        dev_dir: Some(dir.join("dev")),
        ..Environment::default()
    }
}

/// The development CA's bundle, as written for the development caller in `dir`'s dev folder.
fn dev_bundle(dir: &Path) -> ligand::provider::TrustBundles {
    use base64::Engine;
    let pem = std::fs::read_to_string(dir.join("dev/ligand.local/callers/dev/bundle.pem")).unwrap();
    let roots = pem
        .split("-----BEGIN CERTIFICATE-----")
        .skip(1)
        .map(|block| {
            let body: String = block
                .split("-----END CERTIFICATE-----")
                .next()
                .unwrap()
                .split_whitespace()
                .collect();
            let der = base64::engine::general_purpose::STANDARD
                .decode(body)
                .unwrap();
            rustls_pki_types::CertificateDer::from(der)
        })
        .collect();
    ligand::provider::TrustBundles::new().with("ligand.local".parse().unwrap(), roots)
}

/// A plain HTTP GET to the admin listener: status and body.
async fn admin_get(admin: std::net::SocketAddr, path: &str) -> (u16, String) {
    use http_body_util::BodyExt;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    let response = client
        .get(format!("http://{admin}{path}").parse().unwrap())
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

fn write(dir: &Path, relative: &str, contents: &str) {
    let path = dir.join(relative);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, contents).unwrap();
}

#[tokio::test]
async fn embedded_defaults_start_a_fail_closed_service() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "policy/authz.rego", POLICY);
    write(
        dir.path(),
        "ligand.toml",
        "listen = \"127.0.0.1:0\"\n[identity]\nspiffe_id = \"spiffe://ligand.local/service/accounts\"\n\
         [admin]\nlisten = \"127.0.0.1:0\"\n",
    );
    let config = load(dir.path()).unwrap();
    let server = ligand::init(config).await.unwrap();
    let admin = server
        .admin_addr()
        .expect("the admin listener is on by default");
    assert!(admin.ip().is_loopback() && admin.port() != 0, "{admin}");
    // Initialized, not yet serving: the probes say so over plain HTTP.
    let (status, body) = admin_get(admin, "/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("\"binding\":\"initializing\""), "{body}");
    let (status, body) = admin_get(admin, "/metrics").await;
    assert_eq!(status, 200);
    assert!(body.contains("ligand_authz_decisions_total"), "{body}");
    assert_eq!(
        server.spiffe_id().to_string(),
        "spiffe://ligand.local/service/accounts"
    );
    assert_eq!(
        server.monitor().provider(ProviderKind::RateLimiter),
        Some(State::Ready),
        "governor by default"
    );
    assert_eq!(
        server.monitor().provider(ProviderKind::Secrets),
        None,
        "no secrets/ folder, no secrets"
    );
    server.close().await;
}

#[tokio::test]
async fn environment_overrides_the_file_and_secrets_folder_is_picked_up() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "policy/authz.rego", POLICY);
    std::fs::create_dir(dir.path().join("secrets")).unwrap();
    write(
        dir.path(),
        "ligand.toml",
        "[identity]\nspiffe_id = \"spiffe://ligand.local/service/file\"\n",
    );
    let env = Environment {
        listen: Some("127.0.0.1:0".into()),
        spiffe_id: Some("spiffe://ligand.local/service/env".into()),
        socket: None,
        admin_listen: Some("127.0.0.1:0".into()),
        ..dev_env(dir.path())
    };
    let server = ligand::init(load_from(&dir.path().join("ligand.toml"), true, &env).unwrap())
        .await
        .unwrap();
    assert_eq!(
        server.spiffe_id().to_string(),
        "spiffe://ligand.local/service/env"
    );
    assert_eq!(
        server.monitor().provider(ProviderKind::Secrets),
        Some(State::Ready)
    );
    server.close().await;
}

#[test]
fn a_missing_policy_is_refused_with_what_to_create() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "ligand.toml", "");
    let err = load(dir.path()).unwrap_err();
    assert!(
        matches!(
            err,
            ConfigError::Invalid {
                setting: "policy",
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("data.ligand.authz.allow"), "{err}");
}

#[test]
fn file_errors_name_the_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "policy/authz.rego", POLICY);
    write(
        dir.path(),
        "ligand.toml",
        "listen = \"127.0.0.1:0\"\n[rate_limit]\nrate = 10\nbrust = 5\n",
    );
    let err = load(dir.path()).unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, ConfigError::Parse { .. }), "{message}");
    assert!(
        message.contains("line 4") && message.contains("brust"),
        "{message}"
    );
    let bad_id = "[identity]\nspiffe_id = \"not-a-spiffe-id\"\n";
    write(dir.path(), "ligand.toml", bad_id);
    let err = load(dir.path()).unwrap_err();
    assert!(
        matches!(
            err,
            ConfigError::Invalid {
                setting: "identity.spiffe_id",
                ..
            }
        ),
        "{err}"
    );
    let required = load_from(
        &dir.path().join("absent.toml"),
        true,
        &Environment::default(),
    )
    .unwrap_err();
    assert!(matches!(required, ConfigError::Read { .. }), "{required}");
}

#[tokio::test]
async fn an_unreachable_workload_api_fails_init() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "policy/authz.rego", POLICY);
    let socket = format!("unix://{}", dir.path().join("absent.sock").display());
    let env = Environment {
        listen: Some("127.0.0.1:0".into()),
        socket: Some(socket),
        spiffe_id: None,
        admin_listen: Some("127.0.0.1:0".into()),
        ..Environment::default()
    };
    let config = load_from(&dir.path().join("ligand.toml"), false, &env).unwrap();
    let err = ligand::init(config).await.unwrap_err();
    assert!(matches!(err, InitError::Identity(_)), "{err:?}");
}

#[tokio::test]
async fn the_audit_section_writes_json_or_log_lines_and_the_cache_can_be_turned_off() {
    use ligand::{Action, InboundRequest, Link, Resource};

    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "policy/authz.rego",
        "package ligand.authz\n\nimport rego.v1\n\nallow if input.peer.workload == \"spiffe://ligand.local/service/caller\"\n",
    );
    write(
        dir.path(),
        "ligand.toml",
        "listen = \"127.0.0.1:0\"\n[policy]\nfolder = \"policy\"\ncache = false\n\
         [audit]\nformat = \"json\"\npath = \"audit.jsonl\"\nqueue = 64\noverflow = \"block\"\n\
         [admin]\nenabled = false\n",
    );
    let config = load(dir.path()).unwrap();
    let server = ligand::init(config).await.unwrap();
    // The service is Ready once its binding listens.
    let serving = tokio::spawn({
        let server = server.clone();
        async move { server.serve(Nothing).await }
    });
    server.local_addr().await.unwrap();
    let request = || {
        InboundRequest::new(
            Link::workload("spiffe://ligand.local/service/caller"),
            Resource::http_path("/accounts/{id}"),
            Action::new("GET"),
        )
    };
    server.enforce(request()).await.unwrap();
    server.enforce(request()).await.unwrap();
    server.close().await;
    serving.await.unwrap().unwrap();
    let log = std::fs::read_to_string(dir.path().join("audit.jsonl")).unwrap();
    let decisions: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|r: &serde_json::Value| r["type"] == "decision")
        .collect();
    assert_eq!(decisions.len(), 2, "{log}");
    assert!(
        decisions
            .iter()
            .all(|d| d["allowed"] == true && d["cached"] == false)
    );
    // JSON lines to a file are chained by default, and sealed at shutdown with the SVID key.
    let bundle = dev_bundle(dir.path());
    let report = ligand::audit::verify(
        log.as_bytes(),
        &bundle,
        &server.spiffe_id(),
        &ligand::audit::VerifyOptions::default(),
    )
    .unwrap();
    assert_eq!(report.unsealed, 0);
    assert_eq!(report.checkpoints, 1);

    // The default format, readable lines, to a file of its own.
    write(
        dir.path(),
        "ligand.toml",
        "listen = \"127.0.0.1:0\"\n[policy]\nfolder = \"policy\"\n[audit]\npath = \"audit.log\"\n[admin]\nenabled = false\n",
    );
    let config = load(dir.path()).unwrap();
    let server = ligand::init(config).await.unwrap();
    let serving = tokio::spawn({
        let server = server.clone();
        async move { server.serve(Nothing).await }
    });
    server.local_addr().await.unwrap();
    let denied = server
        .enforce(InboundRequest::new(
            Link::workload("spiffe://ligand.local/service/intruder"),
            Resource::http_path("/accounts/{id}"),
            Action::new("GET"),
        ))
        .await
        .unwrap_err();
    server.close().await;
    serving.await.unwrap().unwrap();
    let log = std::fs::read_to_string(dir.path().join("audit.log")).unwrap();
    let line = log
        .lines()
        .find(|l| l.contains(" audit decision "))
        .unwrap_or_else(|| panic!("no decision line in {log}"));
    assert!(
        line.contains(&format!(" request_id={} ", denied.request_id))
            && line.contains(" peer=spiffe://ligand.local/service/intruder ")
            && line.contains(" allowed=false "),
        "{line}"
    );

    write(
        dir.path(),
        "ligand.toml",
        "[audit]\nformat = \"tracing\"\npath = \"audit.log\"\n",
    );
    let error = load(dir.path()).unwrap_err();
    assert!(error.to_string().starts_with("audit.path"), "{error}");
}

#[test]
fn a_chain_needs_a_json_lines_file_and_checkpoints_need_a_chain() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "policy/authz.rego",
        "package ligand.authz\n\nimport rego.v1\n\ndefault allow := false\n",
    );
    for (audit, setting) in [
        (
            "format = \"log\"\npath = \"audit.log\"\nchain = true\n",
            "audit.chain",
        ),
        ("format = \"json\"\nchain = true\n", "audit.chain"),
        (
            "format = \"json\"\npath = \"a.jsonl\"\nchain = false\ncheckpoint_every = 10\n",
            "audit.checkpoint_every",
        ),
        (
            "format = \"json\"\npath = \"a.jsonl\"\ncheckpoint_every = 0\n",
            "audit.checkpoint_every",
        ),
        (
            "format = \"json\"\npath = \"a.jsonl\"\ncheckpoint_interval = \"soon\"\n",
            "audit.checkpoint_interval",
        ),
    ] {
        write(
            dir.path(),
            "ligand.toml",
            &format!("[policy]\nfolder = \"policy\"\n[admin]\nenabled = false\n[audit]\n{audit}"),
        );
        let error = load(dir.path()).unwrap_err();
        assert!(error.to_string().starts_with(setting), "{audit}: {error}");
    }
}

/// A service with one route, for tests that need the binding up.
struct Nothing;

#[ligand::service]
impl Nothing {
    #[ligand::get("/nothing")]
    async fn nothing(&self) -> &'static str {
        ""
    }
}

#[test]
fn the_connections_section_loads_and_refuses_bad_values() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "policy/authz.rego",
        "package ligand.authz\n\nimport rego.v1\n\ndefault allow := false\n",
    );
    write(
        dir.path(),
        "ligand.toml",
        "[connections]\nmax = 64\nmax_handshakes = 8\nhandshake_timeout = \"5s\"\n\
         header_read_timeout = \"15s\"\nmax_age = \"1h\"\n",
    );
    // Each limit's effect is tested on the binding itself (ligand-runtime's connections tests).
    load(dir.path()).unwrap();
    for (bad, setting) in [
        ("max = 0", "connections.max"),
        ("max_handshakes = 0", "connections.max_handshakes"),
        (
            "header_read_timeout = \"soon\"",
            "connections.header_read_timeout",
        ),
        ("max_age = \"0s\"", "connections.max_age"),
    ] {
        write(
            dir.path(),
            "ligand.toml",
            &format!("[connections]\n{bad}\n"),
        );
        let error = load(dir.path()).unwrap_err();
        assert!(error.to_string().starts_with(setting), "{bad}: {error}");
    }
}

#[test]
fn the_registry_section_selects_etcd_and_refuses_bad_values() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "policy/authz.rego", POLICY);
    write(
        dir.path(),
        "ligand.toml",
        "[registry]\nkind = \"etcd\"\nendpoints = [\"http://127.0.0.1:2379\"]\nprefix = \"/bank\"\n\
         lease_ttl = \"5s\"\ngrace_period = \"20s\"\ndial_timeout = \"2s\"\n\
         advertise = \"accounts-1.bank.internal:8443\"\nmetadata = { zone = \"a\" }\n",
    );
    load(dir.path()).unwrap();
    write(dir.path(), "ligand.toml", "[registry]\nkind = \"static\"\n");
    load(dir.path()).unwrap();

    let etcd = "kind = \"etcd\"\nendpoints = [\"http://127.0.0.1:2379\"]\n";
    for (bad, setting) in [
        ("kind = \"consul\"".to_owned(), "ligand.toml"),
        ("kind = \"etcd\"".to_owned(), "registry.endpoints"),
        (
            "kind = \"etcd\"\nendpoints = []".to_owned(),
            "registry.endpoints",
        ),
        (
            "kind = \"etcd\"\nendpoints = [\"127.0.0.1:2379\"]".to_owned(),
            "registry.endpoints",
        ),
        (
            "kind = \"etcd\"\nendpoints = [\"https://etcd:2379\"]".to_owned(),
            "registry.ca",
        ),
        (
            "kind = \"etcd\"\nendpoints = [\"https://etcd:2379\"]\nca = \"absent.pem\"".to_owned(),
            "registry.ca",
        ),
        (format!("{etcd}ca = \"ca.pem\""), "registry.ca"),
        (format!("{etcd}cert = \"c.pem\""), "registry.cert"),
        (format!("{etcd}prefix = \"bank\""), "registry.prefix"),
        (
            format!("{etcd}lease_ttl = \"1500ms\""),
            "registry.lease_ttl",
        ),
        (format!("{etcd}lease_ttl = \"soon\""), "registry.lease_ttl"),
        (
            format!("{etcd}grace_period = \"0s\""),
            "registry.grace_period",
        ),
        (format!("{etcd}username = \"svc\""), "registry.password"),
        (
            format!("{etcd}advertise = \"0.0.0.0:8443\""),
            "registry.advertise",
        ),
        (format!("{etcd}advertise = \"host\""), "registry.advertise"),
        (
            format!("{etcd}advertise = \"host:0\""),
            "registry.advertise",
        ),
        (
            format!("{etcd}metadata = {{ zone = \"a\" }}"),
            "registry.metadata",
        ),
        (format!("{etcd}ttl = \"5s\""), "ligand.toml"),
        (
            "endpoints = [\"http://127.0.0.1:2379\"]".to_owned(),
            "registry.endpoints",
        ),
        ("advertise = \"a:1\"".to_owned(), "registry.advertise"),
    ] {
        write(dir.path(), "ligand.toml", &format!("[registry]\n{bad}\n"));
        let error = load(dir.path()).unwrap_err();
        let shown = error.to_string();
        assert!(
            shown.starts_with(setting) || shown.contains(&format!("/{setting}")),
            "{bad}: {error}"
        );
    }

    // The static registry's table beside etcd is a contradiction, not a fallback.
    write(
        dir.path(),
        "ligand.toml",
        &format!(
            "[registry]\n{etcd}\n[services.\"spiffe://bank.example/service/fraud\"]\nendpoints = [\"127.0.0.1:1\"]\n"
        ),
    );
    assert!(
        load(dir.path())
            .unwrap_err()
            .to_string()
            .starts_with("services")
    );
}

#[tokio::test]
async fn an_unreachable_etcd_fails_init() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "policy/authz.rego", POLICY);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    write(
        dir.path(),
        "ligand.toml",
        &format!(
            "listen = \"127.0.0.1:0\"\n[registry]\nkind = \"etcd\"\n\
             endpoints = [\"http://127.0.0.1:{port}\"]\ndial_timeout = \"500ms\"\n\
             [admin]\nenabled = false\n"
        ),
    );
    let err = ligand::init(load(dir.path()).unwrap()).await.unwrap_err();
    assert!(
        matches!(
            err,
            InitError::Provider {
                kind: ProviderKind::ServiceRegistry,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn the_outbound_resilience_sections_load_and_refuse_bad_values() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "policy/authz.rego",
        "package ligand.authz\n\nimport rego.v1\n\ndefault allow := false\n",
    );
    write(
        dir.path(),
        "ligand.toml",
        "[outbound.balancer]\nstrategy = \"least_request\"\n\n[outbound.retry]\nmax_attempts = 2\n\
         backoff_base = \"10ms\"\ntreat_as_idempotent = [\"POST\"]\n\n[outbound.breaker]\n\
         open_duration = \"2s\"\n\n[outbound.bulkhead]\nmax_concurrent = 64\n\n\
         [outbound.targets.\"spiffe://example.org/service/fraud\".balancer]\n\
         strategy = \"ring_hash\"\n",
    );
    load(dir.path()).unwrap();
    for (bad, named) in [
        ("[outbound.balancer]\nstrategy = \"fastest\"\n", "fastest"),
        ("[outbound.retry]\nmax_attempts = 0\n", "max_attempts"),
        (
            "[outbound.retry]\ntreat_as_idempotent = [\"post\"]\n",
            "post",
        ),
        ("[outbound.breaker]\nfailure_ratio = 1.5\n", "failure_ratio"),
        (
            "[outbound.bulkhead]\nmax_concurrent = 0\n",
            "max_concurrent",
        ),
        (
            "[outbound.outlier]\nbase_ejection_time = \"soon\"\n",
            "soon",
        ),
        ("[outbound.retry]\nattempts = 2\n", "attempts"),
        (
            "[outbound.targets.fraud.retry]\nmax_attempts = 2\n",
            "not a SPIFFE ID",
        ),
        (
            "[outbound.targets.\"spiffe://example.org/a\".retry]\nmax_attempts = 0\n",
            "targets.\"spiffe://example.org/a\".retry.max_attempts",
        ),
    ] {
        write(dir.path(), "ligand.toml", bad);
        let error = load(dir.path()).unwrap_err().to_string();
        assert!(error.contains(named), "{bad}: {error}");
    }
}

#[test]
fn the_outbound_chain_version_loads_and_refuses_unknown_versions() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "policy/authz.rego", POLICY);
    write(dir.path(), "ligand.toml", "[admin]\nenabled = false\n");
    let shown = format!("{:?}", load(dir.path()).unwrap());
    assert!(shown.contains("chain_version: V2"), "{shown}");
    write(
        dir.path(),
        "ligand.toml",
        "[outbound]\nchain_version = 1\n\n[admin]\nenabled = false\n",
    );
    let shown = format!("{:?}", load(dir.path()).unwrap());
    assert!(shown.contains("chain_version: V1"), "{shown}");
    for bad in ["0", "3", "-1", "\"2\""] {
        write(
            dir.path(),
            "ligand.toml",
            &format!("[outbound]\nchain_version = {bad}\n"),
        );
        let error = load(dir.path()).unwrap_err().to_string();
        assert!(error.contains("chain_version"), "{bad}: {error}");
    }
}

#[test]
fn the_retry_fleet_section_loads_and_refuses_bad_values() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "policy/authz.rego", POLICY);
    let good = "[outbound.retry_fleet]\nurl = \"redis://127.0.0.1:1\"\nsync = \"2s\"\n\
                key_prefix = \"bank:retry\"\ntimeout = \"200ms\"\n";
    write(dir.path(), "ligand.toml", good);
    if cfg!(feature = "redis") {
        // Redis is not needed to load: the first sync connects.
        load(dir.path()).unwrap();
    } else {
        let error = load(dir.path()).unwrap_err().to_string();
        assert!(error.starts_with("outbound.retry_fleet:"), "{error}");
        assert!(error.contains("`redis`"), "{error}");
        return;
    }
    for (bad, named) in [
        (
            "[outbound.retry_fleet]\nurl = \"redis://127.0.0.1:1\"\nsync = \"50ms\"\n",
            "outbound.retry_fleet.sync:",
        ),
        (
            "[outbound.retry]\nbudget_ttl = \"5s\"\n[outbound.retry_fleet]\n\
             url = \"redis://127.0.0.1:1\"\nsync = \"6s\"\n",
            "outbound.retry_fleet.sync:",
        ),
        (
            "[outbound.retry_fleet]\nurl = \"rediss://127.0.0.1:1#insecure\"\n",
            "outbound.retry_fleet.url:",
        ),
        (
            "[outbound.retry_fleet]\nurl = \"http://127.0.0.1:1\"\n",
            "outbound.retry_fleet.url:",
        ),
        (
            "[outbound.retry_fleet]\nurl = \"redis://127.0.0.1:1\"\nkey_prefix = \"\"\n",
            "outbound.retry_fleet.key_prefix:",
        ),
        (
            "[outbound.retry_fleet]\nurl = \"redis://127.0.0.1:1\"\nca = \"none.pem\"\n",
            "outbound.retry_fleet.ca:",
        ),
        (
            "[outbound.retry_fleet]\nurl = \"redis://127.0.0.1:1\"\ntimeout = \"soon\"\n",
            "outbound.retry_fleet.timeout:",
        ),
        ("[outbound.retry_fleet]\nsync = \"1s\"\n", "url"),
    ] {
        write(dir.path(), "ligand.toml", bad);
        let error = load(dir.path()).unwrap_err().to_string();
        assert!(error.contains(named), "{bad}: {error}");
    }
}

#[test]
fn the_admin_section_loads_and_refuses_bad_values() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "policy/authz.rego", POLICY);
    let admin = |toml: &str, env: &Environment| {
        write(dir.path(), "ligand.toml", toml);
        load_from(&dir.path().join("ligand.toml"), true, env).map(|c| format!("{c:?}"))
    };
    let none = dev_env(dir.path());
    // On by default, on loopback.
    let config = admin("", &none).unwrap();
    assert!(config.contains("listen: Some(127.0.0.1:9464)"), "{config}");
    let config = admin("[admin]\nlisten = \"0.0.0.0:9100\"\n", &none).unwrap();
    assert!(config.contains("listen: Some(0.0.0.0:9100)"), "{config}");
    let config = admin("[admin]\nenabled = false\n", &none).unwrap();
    assert!(
        config.contains("admin: AdminConfig { listen: None }"),
        "{config}"
    );

    // The environment replaces the address, but does not turn a disabled listener on.
    let env = Environment {
        admin_listen: Some("127.0.0.1:9200".into()),
        ..dev_env(dir.path())
    };
    let config = admin("[admin]\nlisten = \"127.0.0.1:9100\"\n", &env).unwrap();
    assert!(config.contains("listen: Some(127.0.0.1:9200)"), "{config}");
    let config = admin("[admin]\nenabled = false\n", &env).unwrap();
    assert!(config.contains("listen: None"), "{config}");

    for (toml, setting) in [
        ("[admin]\nlisten = \"localhost\"\n", "admin.listen"),
        ("[admin]\nlisten = \"127.0.0.1\"\n", "admin.listen"),
        ("[admin]\nlisten = \"127.0.0.1:99999\"\n", "admin.listen"),
    ] {
        let error = admin(toml, &none).unwrap_err();
        assert!(
            matches!(error, ConfigError::Invalid { setting: s, .. } if s == setting),
            "{toml}: {error}"
        );
        assert!(error.to_string().contains("127.0.0.1:9464"), "{error}");
    }
    let env = Environment {
        admin_listen: Some("nonsense".into()),
        ..Environment::default()
    };
    let error = admin("", &env).unwrap_err();
    assert!(
        matches!(
            error,
            ConfigError::Invalid {
                setting: "LIGAND_ADMIN_LISTEN",
                ..
            }
        ),
        "{error}"
    );
    let error = admin("[admin]\nport = 9464\n", &none).unwrap_err();
    assert!(matches!(error, ConfigError::Parse { .. }), "{error}");
    assert!(error.to_string().contains("port"), "{error}");
}

#[tokio::test]
async fn an_admin_port_in_use_fails_init_naming_the_address_and_setting() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "policy/authz.rego", POLICY);
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap();
    write(
        dir.path(),
        "ligand.toml",
        &format!("listen = \"127.0.0.1:0\"\n[admin]\nlisten = \"{address}\"\n"),
    );
    let error = ligand::init(load(dir.path()).unwrap()).await.unwrap_err();
    let message = error.to_string();
    assert!(matches!(error, InitError::Admin { .. }), "{error:?}");
    assert!(
        message.contains(&address.to_string()) && message.contains("admin.listen"),
        "{message}"
    );
}

#[test]
fn the_txn_token_section_loads_and_refuses_bad_values() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "policy/authz.rego", POLICY);
    let issuer = ligand::testkit::TxnIssuer::new("txn-1");
    write(dir.path(), "txn/jwks.json", &issuer.jwks_json());
    write(
        dir.path(),
        "ligand.toml",
        "[txn_token]\njwks = \"txn/jwks.json\"\nissuers = [\"https://txn.example.org\"]\n\
         require = true\nleeway = \"0s\"\nalgorithms = [\"ES256\"]\n",
    );
    let config = load(dir.path()).unwrap();
    let shown = format!("{config:?}");
    assert!(
        shown.contains("txn-1") && shown.contains("require: true"),
        "{shown}"
    );
    write(
        dir.path(),
        "txn/oct.json",
        r#"{"keys":[{"kty":"oct","kid":"s","k":"c2VjcmV0"}]}"#,
    );
    for (bad, setting) in [
        ("jwks = \"txn/absent.json\"", "txn_token.jwks"),
        ("jwks = \"policy/authz.rego\"", "txn_token.jwks"),
        (
            "jwks = \"txn/jwks.json\"\nleeway = \"soon\"",
            "txn_token.leeway",
        ),
        (
            "jwks = \"txn/jwks.json\"\nalgorithms = [\"HS256\"]",
            "txn_token.algorithms",
        ),
        (
            "jwks = \"txn/jwks.json\"\nalgorithms = [\"none\"]",
            "txn_token.algorithms",
        ),
    ] {
        write(dir.path(), "ligand.toml", &format!("[txn_token]\n{bad}\n"));
        let error = load(dir.path()).unwrap_err();
        assert!(error.to_string().starts_with(setting), "{bad}: {error}");
    }
}

#[tokio::test]
async fn a_symmetric_key_in_the_txn_jwks_fails_init() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "policy/authz.rego", POLICY);
    write(
        dir.path(),
        "oct.json",
        r#"{"keys":[{"kty":"oct","kid":"s","k":"c2VjcmV0"}]}"#,
    );
    write(
        dir.path(),
        "ligand.toml",
        "[admin]\nenabled = false\n\n[txn_token]\njwks = \"oct.json\"\n",
    );
    let config = load(dir.path()).unwrap();
    let Err(error) = ligand::init(config).await else {
        panic!("init accepted a symmetric key");
    };
    assert!(
        matches!(&error, InitError::Config(message) if message.starts_with("txn_token")),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_shadow_policy_folder_is_configured_in_the_policy_table() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "policy/authz.rego", POLICY);
    write(
        dir.path(),
        "ligand.toml",
        "listen = \"127.0.0.1:0\"\n[policy]\nfolder = \"policy\"\nwatch = false\nshadow = \"policy-next\"\n\
         [admin]\nlisten = \"127.0.0.1:0\"\n",
    );
    let err = load(dir.path()).unwrap_err();
    assert!(
        matches!(
            err,
            ConfigError::Invalid {
                setting: "policy.shadow",
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("policy-next"), "{err}");

    write(dir.path(), "policy-next/authz.rego", POLICY);
    let server = ligand::init(load(dir.path()).unwrap()).await.unwrap();
    assert_eq!(
        server.shadow_decisions(),
        Some(ligand::ShadowDecisions::default())
    );
    let (status, body) = admin_get(server.admin_addr().unwrap(), "/metrics").await;
    assert_eq!(status, 200);
    for agreement in ["agree", "disagree", "error"] {
        assert!(
            body.contains(&format!(
                "ligand_shadow_decisions_total{{agreement=\"{agreement}\"}} 0"
            )),
            "{body}"
        );
    }
    server.close().await;
}

#[test]
fn the_wimse_section_loads_and_refuses_bad_values() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "policy/authz.rego", POLICY);
    let issuer = ligand::testkit::WitIssuer::new("wit-1");
    write(dir.path(), "wit/jwks.json", &issuer.jwks_json());
    write(
        dir.path(),
        "ligand.toml",
        "[wimse]\njwks = \"wit/jwks.json\"\nissuers = [\"https://wit.example.org\"]\n\
         require = true\nleeway = \"0s\"\nmax_wpt_lifetime = \"1m\"\nreplay_cache_capacity = 10\n",
    );
    let config = load(dir.path()).unwrap();
    let shown = format!("{config:?}");
    assert!(
        shown.contains("wit-1") && shown.contains("require: true") && shown.contains("60s"),
        "{shown}"
    );
    for (bad, setting) in [
        ("jwks = \"wit/absent.json\"", "wimse.jwks"),
        ("jwks = \"policy/authz.rego\"", "wimse.jwks"),
        (
            "jwks = \"wit/jwks.json\"\nleeway = \"soon\"",
            "wimse.leeway",
        ),
        (
            "jwks = \"wit/jwks.json\"\nmax_wpt_lifetime = \"1h\"",
            "wimse.max_wpt_lifetime",
        ),
        (
            "jwks = \"wit/jwks.json\"\nmax_wpt_lifetime = \"0s\"",
            "wimse.max_wpt_lifetime",
        ),
        (
            "jwks = \"wit/jwks.json\"\nreplay_cache_capacity = 0",
            "wimse.replay_cache_capacity",
        ),
    ] {
        write(dir.path(), "ligand.toml", &format!("[wimse]\n{bad}\n"));
        let error = load(dir.path()).unwrap_err();
        assert!(error.to_string().starts_with(setting), "{bad}: {error}");
    }
}

#[test]
fn the_development_identity_settings_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "policy/authz.rego", POLICY);
    let refused = |toml: &str, env: &Environment| {
        write(dir.path(), "ligand.toml", toml);
        match load_from(&dir.path().join("ligand.toml"), true, env) {
            Ok(_) => panic!("{toml} was accepted"),
            Err(ConfigError::Invalid {
                setting, message, ..
            }) => (setting, message),
            Err(other) => panic!("{toml}: {other}"),
        }
    };
    let (setting, _) = refused("[identity]\ndev_caller = \"a/b\"\n", &dev_env(dir.path()));
    assert_eq!(setting, "identity.dev_caller");
    let (setting, message) = refused(
        "[identity]\nsocket = \"unix:///run/spire/agent.sock\"\ndev_dir = \"dev\"\n",
        &Environment::default(),
    );
    assert_eq!(setting, "identity.dev_dir", "{message}");

    // The file's folder, relative to the file; a CA key others can read is refused.
    write(
        dir.path(),
        "ligand.toml",
        "[identity]\ndev_dir = \"mine\"\n",
    );
    load_from(
        &dir.path().join("ligand.toml"),
        true,
        &Environment::default(),
    )
    .unwrap();
    let key = dir.path().join("mine/ligand.local/ca.key.pem");
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let (setting, message) = refused("[identity]\ndev_dir = \"mine\"\n", &Environment::default());
    assert_eq!(setting, "identity.dev_dir");
    assert!(
        message.contains("ca.key.pem is readable by group or others"),
        "{message}"
    );
}

#[test]
fn the_log_section_is_checked_naming_its_setting() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "policy/authz.rego",
        "package ligand.authz\n\nimport rego.v1\n\ndefault allow := false\n",
    );
    let toml = |log: &str| {
        format!("[policy]\nfolder = \"policy\"\n[admin]\nenabled = false\n[log]\n{log}")
    };
    write(
        dir.path(),
        "ligand.toml",
        &toml("format = \"json\"\nlevel = \"debug,hyper=info\"\n"),
    );
    load(dir.path()).unwrap();
    for (log, setting) in [
        ("format = \"yaml\"\n", "log.format"),
        ("level = \"info,[{\"\n", "log.level"),
    ] {
        write(dir.path(), "ligand.toml", &toml(log));
        let error = load(dir.path()).unwrap_err();
        assert!(error.to_string().starts_with(setting), "{log}: {error}");
    }
}

#[test]
fn the_gateway_section_loads_and_refuses_bad_values() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "policy/authz.rego", POLICY);
    let idp = ligand::testkit::TxnIssuer::new("idp-1");
    let tts = ligand::testkit::TxnIssuer::new("tts-1");
    write(dir.path(), "gateway/idp.json", &idp.jwks_json());
    write(dir.path(), "gateway/tts.pem", &tts.pem());
    let good = "listen = \"127.0.0.1:0\"\njwks = \"gateway/idp.json\"\n\
                issuers = [\"https://idp.example\"]\naudience = \"https://api.example\"\n\
                signing_key = \"gateway/tts.pem\"\nsigning_kid = \"tts-1\"\n\
                issuer = \"https://gw.example\"\nlifetime = \"2m\"\nleeway = \"10s\"\n\
                sts_path = \"/oauth/token\"\n";
    write(
        dir.path(),
        "ligand.toml",
        &format!("[admin]\nenabled = false\n\n[gateway]\n{good}"),
    );
    let config = load(dir.path()).unwrap();
    let shown = format!("{config:?}");
    for expected in [
        "GatewayConfig",
        "tts-1",
        "https://gw.example",
        "idp.example",
        "/oauth/token",
    ] {
        assert!(shown.contains(expected), "{expected}: {shown}");
    }
    write(
        dir.path(),
        "gateway/oct.json",
        r#"{"keys":[{"kty":"oct","kid":"s","k":"c2VjcmV0"}]}"#,
    );
    let with = |key: &str, value: &str| {
        good.lines()
            .map(|line| {
                if line.starts_with(&format!("{key} =")) {
                    format!("{key} = {value}")
                } else {
                    line.to_owned()
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    for (bad, setting) in [
        (with("issuers", "[]"), "gateway.issuers"),
        (with("audience", "\"\""), "gateway.audience"),
        (with("jwks", "\"gateway/absent.json\""), "gateway.jwks"),
        (
            with("signing_key", "\"gateway/idp.json\""),
            "gateway.signing_key",
        ),
        (
            with("signing_key", "\"gateway/absent.pem\""),
            "gateway.signing_key",
        ),
        (
            format!("{good}signing_algorithm = \"HS256\"\n"),
            "gateway.signing_algorithm",
        ),
        (with("lifetime", "\"0s\""), "gateway.lifetime"),
        (with("sts_path", "\"token\""), "gateway.sts_path"),
        (with("sts_path", "\"/token/{id}\""), "gateway.sts_path"),
        (with("leeway", "\"soon\""), "gateway.leeway"),
        (with("jwks", "\"gateway/oct.json\""), "gateway.jwks"),
        (format!("{good}cert = \"gateway/tts.pem\"\n"), "gateway.key"),
        (format!("{good}key = \"gateway/tts.pem\"\n"), "gateway.cert"),
        (
            format!("{good}cert = \"gateway/tts.pem\"\nkey = \"gateway/tts.pem\"\n"),
            "gateway.cert",
        ),
    ] {
        write(dir.path(), "ligand.toml", &format!("[gateway]\n{bad}\n"));
        let error = load(dir.path()).unwrap_err();
        assert!(error.to_string().starts_with(setting), "{bad}: {error}");
    }
}

#[test]
fn bundle_signing_keys_are_read_relative_to_the_file() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "policy/authz.rego", POLICY);
    let key = rcgen::KeyPair::generate().unwrap();
    write(dir.path(), "keys/bundles.pub.pem", &key.public_key_pem());
    let toml = |path: &str| {
        format!(
            "[admin]\nenabled = false\n\n[policy]\nfolder = \"policy\"\n\n\
             [policy.signing]\nrequired = false\n\n[[policy.signing.keys]]\nid = \"bundles-1\"\nalgorithm = \"ES256\"\npath = \"{path}\"\n"
        )
    };
    // The test runs in the crate's folder, not the file's: only a path resolved against the
    // file's folder finds the key. (An unpacked folder is unsigned, so signatures are not
    // required here; the key is read all the same.)
    write(dir.path(), "ligand.toml", &toml("keys/bundles.pub.pem"));
    load(dir.path()).unwrap();
    write(dir.path(), "ligand.toml", &toml("keys/absent.pem"));
    let error = load(dir.path()).unwrap_err().to_string();
    assert!(error.contains("absent.pem"), "{error}");
}

#[test]
fn the_telemetry_section_loads_and_refuses_bad_values() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "policy/authz.rego",
        "package ligand.authz\n\nimport rego.v1\n\ndefault allow := false\n",
    );
    write(
        dir.path(),
        "ligand.toml",
        "[telemetry]\notlp = \"http://127.0.0.1:4317\"\nservice_name = \"accounts\"\nsampling = 0.25\n",
    );
    load(dir.path()).unwrap();
    for (bad, setting) in [
        ("otlp = \"127.0.0.1:4317\"", "telemetry.otlp"),
        // No TLS to the collector yet: refused at load, not failing at every export.
        ("otlp = \"https://collector:4317\"", "telemetry.otlp"),
        ("service_name = \" \"", "telemetry.service_name"),
        ("sampling = 1.5", "telemetry.sampling"),
        ("sampling = -0.1", "telemetry.sampling"),
        ("endpoint = \"http://x\"", "unknown field `endpoint`"),
    ] {
        write(dir.path(), "ligand.toml", &format!("[telemetry]\n{bad}\n"));
        let error = load(dir.path()).unwrap_err();
        assert!(error.to_string().contains(setting), "{bad}: {error}");
    }
}

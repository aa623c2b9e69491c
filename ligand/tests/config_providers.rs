//! `ligand.toml` naming the providers that reach a backend: the Redis rate limiter and WPT
//! replay cache against a real `redis-server`, OpenBao's settings and error paths (no OpenBao
//! server is started: an unreachable one must fail the start, naming the setting), and the
//! bundle fetcher's settings.
#![allow(clippy::unwrap_used, reason = "tests")]

use std::path::Path;

use ligand::config::{ConfigError, Environment, load_from};
use ligand::testkit::{RedisServer, RedisTlsFiles, unused_loopback_port};
use ligand::{ProviderKind, State};

const POLICY: &str = "package ligand.authz\n\ndefault allow := false\n";

fn dev_env(dir: &Path) -> Environment {
    Environment {
        dev_dir: Some(dir.join("dev")),
        listen: Some("127.0.0.1:0".into()),
        ..Environment::default()
    }
}

/// A folder with a policy and `ligand.toml` = `[admin] enabled = false` + `toml`.
fn service(toml: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("policy")).unwrap();
    std::fs::write(dir.path().join("policy/authz.rego"), POLICY).unwrap();
    std::fs::write(
        dir.path().join("ligand.toml"),
        format!("[admin]\nenabled = false\n\n{toml}"),
    )
    .unwrap();
    dir
}

fn load(dir: &Path, env: &Environment) -> Result<ligand::Config, ConfigError> {
    load_from(&dir.join("ligand.toml"), true, env)
}

/// An error and its sources on one line.
fn chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

fn refused(dir: &Path, env: &Environment) -> (&'static str, String) {
    match load(dir, env) {
        Err(error @ ConfigError::Invalid { setting, .. }) => (setting, error.to_string()),
        Err(other) => panic!("not an invalid setting: {other}"),
        Ok(_) => panic!("accepted"),
    }
}

#[tokio::test]
async fn a_redis_rate_limiter_starts_against_a_real_server() {
    let redis = RedisServer::start();
    let dir = service(&format!(
        "[rate_limit]\nkind = \"redis\"\nurl = \"{}\"\nrate = 10\nburst = 5\nkey_prefix = \"test:rl\"\ntimeout = \"500ms\"\nconnect_timeout = \"2s\"\n",
        redis.url()
    ));
    let server = ligand::init(load(dir.path(), &dev_env(dir.path())).unwrap())
        .await
        .unwrap();
    let health = server.monitor().provider(ProviderKind::RateLimiter);
    assert_eq!(health, Some(State::Ready));
    server.close().await;
}

#[tokio::test]
async fn ligand_redis_url_replaces_the_files_url() {
    let redis = RedisServer::start();
    let dir = service("[rate_limit]\nkind = \"redis\"\nurl = \"redis://127.0.0.1:1\"\n");
    let env = Environment {
        redis_url: Some(redis.url()),
        ..dev_env(dir.path())
    };
    let server = ligand::init(load(dir.path(), &env).unwrap()).await.unwrap();
    server.close().await;
}

#[tokio::test]
async fn an_unreachable_redis_fails_the_start_naming_the_setting() {
    let port = unused_loopback_port();
    let dir = service(&format!(
        "[rate_limit]\nkind = \"redis\"\nurl = \"redis://127.0.0.1:{port}\"\nconnect_timeout = \"2s\"\n"
    ));
    let error = ligand::init(load(dir.path(), &dev_env(dir.path())).unwrap())
        .await
        .unwrap_err();
    let shown = chain(&error);
    assert!(shown.contains("rate_limit.url"), "{shown}");
    assert!(shown.contains(&port.to_string()), "{shown}");

    let env = Environment {
        redis_url: Some(format!("redis://127.0.0.1:{port}")),
        ..dev_env(dir.path())
    };
    let error = ligand::init(load(dir.path(), &env).unwrap())
        .await
        .unwrap_err();
    assert!(chain(&error).contains("LIGAND_REDIS_URL"), "{error}");
}

#[tokio::test]
async fn a_tls_redis_rate_limiter_trusts_the_configured_ca() {
    let dir = service("");
    let tls = RedisTlsFiles::generate(dir.path());
    let redis = RedisServer::start_tls(tls.clone());
    std::fs::write(
        dir.path().join("ligand.toml"),
        format!(
            "[admin]\nenabled = false\n\n[rate_limit]\nkind = \"redis\"\nurl = \"{}\"\nca = \"{}\"\n",
            redis.url(),
            tls.ca.display()
        ),
    )
    .unwrap();
    let server = ligand::init(load(dir.path(), &dev_env(dir.path())).unwrap())
        .await
        .unwrap();
    server.close().await;
}

#[test]
fn redis_rate_limit_settings_are_checked_when_loaded() {
    for (toml, setting) in [
        ("kind = \"redis\"\n", "rate_limit.url"),
        (
            "kind = \"redis\"\nurl = \"http://127.0.0.1:6379\"\n",
            "rate_limit.url",
        ),
        (
            "kind = \"redis\"\nurl = \"rediss://h:6380/#insecure\"\n",
            "rate_limit.url",
        ),
        (
            "kind = \"redis\"\nurl = \"redis://h:6379\"\ntimeout = \"0s\"\n",
            "rate_limit.timeout",
        ),
        (
            "kind = \"redis\"\nurl = \"redis://h:6379\"\nca = \"absent.pem\"\n",
            "rate_limit.ca",
        ),
        (
            "kind = \"redis\"\nurl = \"redis://h:6379\"\nrate = 0\n",
            "rate_limit",
        ),
        (
            "kind = \"redis\"\nurl = \"redis://h:6379\"\neviction_interval_ms = 5\n",
            "rate_limit.eviction_interval_ms",
        ),
        ("url = \"redis://h:6379\"\n", "rate_limit.url"),
    ] {
        let dir = service(&format!("[rate_limit]\n{toml}"));
        let (refused_setting, shown) = refused(dir.path(), &dev_env(dir.path()));
        assert_eq!(refused_setting, setting, "{toml}: {shown}");
    }
    // The in-process limiter with LIGAND_REDIS_URL set is a mistake, not a silent default.
    let dir = service("[rate_limit]\nrate = 5\nburst = 5\n");
    let env = Environment {
        redis_url: Some("redis://127.0.0.1:6379".into()),
        ..dev_env(dir.path())
    };
    assert_eq!(refused(dir.path(), &env).0, "LIGAND_REDIS_URL");
}

#[test]
fn errors_name_the_file_and_line_of_the_setting() {
    let dir = service("[rate_limit]\nkind = \"redis\"\nurl = \"http://h:1\"\n");
    let (_, shown) = refused(dir.path(), &dev_env(dir.path()));
    let at = format!("{}:6", dir.path().join("ligand.toml").display());
    assert!(shown.starts_with("rate_limit.url: "), "{shown}");
    assert!(shown.contains(&at), "{shown}");
    // The password of a URL is never shown.
    let dir = service("[rate_limit]\nkind = \"redis\"\nurl = \"redis://u:hunter2@h:1/#x\"\n");
    let (_, shown) = refused(dir.path(), &dev_env(dir.path()));
    assert!(!shown.contains("hunter2"), "{shown}");
}

#[test]
fn wrong_types_and_unknown_keys_are_parse_errors_with_the_line() {
    for (toml, line, named) in [
        ("[rate_limit]\nkind = 5\n", "line 5", "kind"),
        (
            "[rate_limit]\nkind = \"memcached\"\n",
            "line 5",
            "memcached",
        ),
        (
            "[secrets]\nkind = \"openbao\"\nadress = \"x\"\n",
            "line 6",
            "adress",
        ),
        ("[bundle_fetcher]\nserver_id = 7\n", "line 5", "server_id"),
        (
            "[wimse]\njwks = \"j\"\nreplay = \"disk\"\n",
            "line 6",
            "disk",
        ),
        (
            "[secrets]\nmax_response_bytes = \"big\"\n",
            "line 5",
            "max_response_bytes",
        ),
    ] {
        let dir = service(toml);
        match load(dir.path(), &dev_env(dir.path())) {
            Err(error @ ConfigError::Parse { .. }) => {
                let shown = error.to_string();
                assert!(
                    shown.contains(line) && shown.contains(named),
                    "{toml}: {shown}"
                );
            }
            other => panic!("{toml}: {:?}", other.map(|_| ())),
        }
    }
}

#[tokio::test]
async fn a_redis_replay_cache_starts_and_an_unreachable_one_fails_the_start() {
    let redis = RedisServer::start();
    let jwks = r#"{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"k1","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}"#;
    let dir = service(&format!(
        "[wimse]\njwks = \"wit-jwks.json\"\nreplay = \"redis\"\nreplay_url = \"{}\"\nreplay_key_prefix = \"test:wpt:\"\nreplay_timeout = \"500ms\"\n",
        redis.url()
    ));
    std::fs::write(dir.path().join("wit-jwks.json"), jwks).unwrap();
    let server = ligand::init(load(dir.path(), &dev_env(dir.path())).unwrap())
        .await
        .unwrap();
    server.close().await;

    let port = unused_loopback_port();
    let env = Environment {
        replay_redis_url: Some(format!("redis://127.0.0.1:{port}")),
        ..dev_env(dir.path())
    };
    let error = ligand::init(load(dir.path(), &env).unwrap())
        .await
        .unwrap_err();
    assert!(
        chain(&error).contains("LIGAND_REPLAY_REDIS_URL"),
        "{}",
        chain(&error)
    );

    for (toml, setting) in [
        ("replay = \"redis\"\n", "wimse.replay_url"),
        (
            "replay = \"redis\"\nreplay_url = \"redis://h:1\"\nreplay_cache_capacity = 5\n",
            "wimse.replay_cache_capacity",
        ),
        ("replay_url = \"redis://h:1\"\n", "wimse.replay_url"),
        (
            "replay = \"redis\"\nreplay_url = \"redis://h:1\"\nreplay_timeout = \"soon\"\n",
            "wimse.replay_timeout",
        ),
        // The store takes whole milliseconds: a shorter timeout is refused when loaded.
        (
            "replay = \"redis\"\nreplay_url = \"redis://h:1\"\nreplay_timeout = \"500us\"\n",
            "wimse.replay_timeout",
        ),
        (
            "replay = \"redis\"\nreplay_url = \"redis://h:1\"\nreplay_connect_timeout = \"10us\"\n",
            "wimse.replay_connect_timeout",
        ),
    ] {
        let dir = service(&format!("[wimse]\njwks = \"wit-jwks.json\"\n{toml}"));
        std::fs::write(dir.path().join("wit-jwks.json"), jwks).unwrap();
        let (refused_setting, shown) = refused(dir.path(), &dev_env(dir.path()));
        assert_eq!(refused_setting, setting, "{toml}: {shown}");
    }
}

/// A PEM CA file for OpenBao's settings (any valid CA certificate will do).
fn ca_file(dir: &Path) -> String {
    RedisTlsFiles::generate(&dir.join("tls"))
        .ca
        .display()
        .to_string()
}

#[test]
fn openbao_settings_are_checked_when_loaded() {
    let probe = tempfile::tempdir().unwrap();
    let ca = ca_file(probe.path());
    for (toml, setting) in [
        ("kind = \"openbao\"\n", "secrets.address"),
        (
            "kind = \"openbao\"\naddress = \"https://bao:8200\"\n",
            "secrets.ca",
        ),
        (
            "kind = \"openbao\"\naddress = \"http://bao:8200\"\nca = \"CA\"\nauth = \"cert\"\n",
            "secrets.address",
        ),
        (
            "kind = \"openbao\"\naddress = \"https://bao:8200\"\nca = \"CA\"\nauth = \"kerberos\"\n",
            "secrets.auth",
        ),
        (
            "kind = \"openbao\"\naddress = \"https://bao:8200\"\nca = \"CA\"\nauth = \"jwt\"\njwt = \"svid.jwt\"\n",
            "secrets.role",
        ),
        (
            "kind = \"openbao\"\naddress = \"https://bao:8200\"\nca = \"CA\"\nauth = \"jwt\"\nrole = \"r\"\n",
            "secrets.jwt",
        ),
        (
            "kind = \"openbao\"\naddress = \"https://bao:8200\"\nca = \"CA\"\nauth = \"cert\"\nlease_poll_interval = \"0s\"\n",
            "secrets.lease_poll_interval",
        ),
        (
            "kind = \"openbao\"\naddress = \"https://bao:8200\"\nca = \"CA\"\nauth = \"cert\"\ndir = \"secrets\"\n",
            "secrets.dir",
        ),
        (
            "dir = \"secrets\"\naddress = \"https://bao:8200\"\n",
            "secrets.address",
        ),
        ("kind = \"file\"\n", "secrets.dir"),
    ] {
        let dir = service(&format!("[secrets]\n{}", toml.replace("CA", &ca)));
        std::fs::create_dir_all(dir.path().join("secrets")).unwrap();
        let (refused_setting, shown) = refused(dir.path(), &dev_env(dir.path()));
        assert_eq!(refused_setting, setting, "{toml}: {shown}");
    }
    // A CA file that holds no certificate.
    let dir = service(
        "[secrets]\nkind = \"openbao\"\naddress = \"https://bao:8200\"\nca = \"ca.pem\"\nauth = \"cert\"\n",
    );
    std::fs::write(dir.path().join("ca.pem"), "not a certificate\n").unwrap();
    assert_eq!(refused(dir.path(), &dev_env(dir.path())).0, "secrets.ca");
}

#[test]
fn the_openbao_token_comes_from_the_environment() {
    let probe = tempfile::tempdir().unwrap();
    let ca = ca_file(probe.path());
    let dir = service(&format!(
        "[secrets]\nkind = \"openbao\"\naddress = \"https://bao:8200\"\nca = \"{ca}\"\n"
    ));
    let env = Environment {
        openbao_token: Some(String::new()),
        ..dev_env(dir.path())
    };
    assert_eq!(refused(dir.path(), &env).0, "LIGAND_OPENBAO_TOKEN");
    let env = Environment {
        openbao_token: Some("s.token".into()),
        ..dev_env(dir.path())
    };
    load(dir.path(), &env).unwrap();
    // The token never shows in the environment's Debug form.
    assert!(!format!("{env:?}").contains("s.token"));
    // LIGAND_OPENBAO_ADDR replaces the file's address, and is checked the same way.
    let env = Environment {
        openbao_token: Some("s.token".into()),
        openbao_addr: Some("bao:8200".into()),
        ..dev_env(dir.path())
    };
    assert_eq!(refused(dir.path(), &env).0, "LIGAND_OPENBAO_ADDR");
}

#[tokio::test]
async fn an_unreachable_openbao_fails_the_start_naming_the_setting() {
    let probe = tempfile::tempdir().unwrap();
    let ca = ca_file(probe.path());
    let port = unused_loopback_port();
    let dir = service(&format!(
        "[secrets]\nkind = \"openbao\"\naddress = \"https://127.0.0.1:{port}\"\nca = \"{ca}\"\nrequest_timeout = \"2s\"\n"
    ));
    let env = Environment {
        openbao_token: Some("s.token".into()),
        ..dev_env(dir.path())
    };
    let error = ligand::init(load(dir.path(), &env).unwrap())
        .await
        .unwrap_err();
    let shown = chain(&error);
    assert!(shown.contains("secrets.address"), "{shown}");
    assert!(!shown.contains("s.token"), "{shown}");
}

#[test]
fn bundle_fetcher_settings_are_checked_when_loaded() {
    let ok = "url = \"https://bundles.internal:8443\"\nserver_id = \"spiffe://ligand.local/ligand/bundle-server\"\nlong_poll = \"20s\"\npoll_interval = \"5s\"\nmax_bundle_bytes = 1048576\n";
    let dir = service(&format!("[bundle_fetcher]\n{ok}"));
    load(dir.path(), &dev_env(dir.path())).unwrap();
    for (toml, setting) in [
        (
            "server_id = \"spiffe://ligand.local/b\"\n",
            "bundle_fetcher.url",
        ),
        (
            "url = \"http://b:1\"\nserver_id = \"spiffe://ligand.local/b\"\n",
            "bundle_fetcher.url",
        ),
        (
            "url = \"https://b:1\"\nserver_id = \"bundle-server\"\n",
            "bundle_fetcher.server_id",
        ),
        (
            "url = \"https://b:1\"\nserver_id = \"spiffe://ligand.local/b\"\nbundle = \"../etc\"\n",
            "bundle_fetcher.bundle",
        ),
        (
            "url = \"https://b:1\"\nserver_id = \"spiffe://ligand.local/b\"\nmin_backoff = \"1m\"\nmax_backoff = \"1s\"\n",
            "bundle_fetcher.max_backoff",
        ),
    ] {
        let dir = service(&format!("[bundle_fetcher]\n{toml}"));
        let (refused_setting, shown) = refused(dir.path(), &dev_env(dir.path()));
        assert_eq!(refused_setting, setting, "{toml}: {shown}");
    }
    let dir = service("");
    let env = Environment {
        bundle_url: Some("https://b:1".into()),
        ..dev_env(dir.path())
    };
    assert_eq!(refused(dir.path(), &env).0, "LIGAND_BUNDLE_URL");
}

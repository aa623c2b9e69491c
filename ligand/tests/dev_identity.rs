//! Services on embedded defaults share the user's development CA: callers outside the process
//! use the credentials written at start (with curl itself), and two such services call each
//! other over mTLS with no configuration beyond where the other listens.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::net::SocketAddr;
use std::path::Path as FsPath;

use ligand::config::{Environment, load_from};
use ligand::prelude::*;
use ligand_identity_agent::{DEFAULT_CALLER_TTL, DevDir};
use serde::{Deserialize, Serialize};

const GREETER: &str = "spiffe://ligand.local/service/greeter";
const FRONT: &str = "spiffe://ligand.local/service/front";
/// Allows `GET /hello/{name}` to anyone the mTLS layer admitted; denies everything else.
const POLICY: &str = "package ligand.authz\n\nimport rego.v1\n\ndefault allow := false\n\n\
    allow if {\n    input.request.method == \"GET\"\n    startswith(input.request.path, \"/hello/\")\n}\n";

#[derive(Debug, Serialize, Deserialize)]
struct Greeting {
    greeting: String,
    caller: String,
}

struct Greeter;

#[ligand::service]
impl Greeter {
    #[get("/hello/{name}")]
    async fn hello(&self, ctx: Ctx, Path(name): Path<String>) -> Json<Greeting> {
        Json(Greeting {
            greeting: format!("hello, {name}"),
            caller: ctx.caller().principal().unwrap_or_default().to_owned(),
        })
    }

    #[post("/admin/reset", action = "reset")]
    async fn reset(&self) -> StatusCode {
        StatusCode::NO_CONTENT
    }
}

#[ligand::client(service = "spiffe://ligand.local/service/greeter")]
trait GreeterApi {
    #[get("/hello/{name}")]
    async fn hello(&self, name: &str) -> Result<Greeting, CallError>;
}

/// A service folder: the policy, and `ligand.toml` with `extra` appended.
fn service_dir(spiffe_id: &str, extra: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("policy")).unwrap();
    std::fs::write(dir.path().join("policy/authz.rego"), POLICY).unwrap();
    std::fs::write(
        dir.path().join("ligand.toml"),
        format!(
            "listen = \"127.0.0.1:0\"\n{extra}\n[identity]\nspiffe_id = \"{spiffe_id}\"\n\
             [admin]\nenabled = false\n"
        ),
    )
    .unwrap();
    dir
}

/// Starts the service of `dir` (on the development folder `dev`) serving `Greeter`.
async fn start(dir: &FsPath, dev: &FsPath) -> (ligand::Server, SocketAddr) {
    let env = Environment {
        dev_dir: Some(dev.to_owned()),
        ..Environment::default()
    };
    let config = load_from(&dir.join("ligand.toml"), true, &env).unwrap();
    let server = ligand::init(config).await.unwrap();
    let serving = server.clone();
    tokio::spawn(async move { serving.serve(Greeter).await });
    let addr = server.local_addr().await.unwrap();
    (server, addr)
}

/// Runs `line` in `sh`, printing the status code after the body.
async fn run_curl(line: String) -> (u16, String) {
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "{line} --silent --show-error --write-out '\\n%{{http_code}}'"
            ))
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "curl failed: {stderr}\n{stdout}");
    let (body, status) = stdout.rsplit_once('\n').unwrap();
    (status.parse().unwrap(), body.to_owned())
}

#[tokio::test(flavor = "multi_thread")]
async fn curl_calls_a_service_on_embedded_defaults_with_the_written_credentials() {
    let have_curl = std::process::Command::new("sh")
        .args(["-c", "command -v curl"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !have_curl {
        eprintln!("skipped: no `curl` on PATH to run the printed command with");
        return;
    }
    let dev = tempfile::tempdir().unwrap();
    let dir = service_dir(GREETER, "");
    let (server, addr) = start(dir.path(), dev.path()).await;

    // What the service wrote once listening (the call waits for the same lock and keeps the
    // still-valid files), and the line it printed, for the paths below.
    let dev_dir = DevDir::new(dev.path());
    let ca = dev_dir
        .ca(&ligand::TrustDomain::new("ligand.local").unwrap())
        .unwrap();
    let credentials = dev_dir
        .write_caller(&ca, "dev", DEFAULT_CALLER_TTL)
        .unwrap();
    assert_eq!(
        credentials.dir,
        dev.path().join("ligand.local/callers/dev"),
        "the documented place"
    );
    let mode = |p: &FsPath| {
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(p).unwrap().permissions())
            & 0o777
    };
    assert_eq!(mode(&credentials.key), 0o600);
    assert_eq!(mode(&credentials.cert), 0o600);

    let (status, body) = run_curl(credentials.curl_command(addr, "/hello/curl")).await;
    assert_eq!(status, 200, "{body}");
    let greeting: Greeting = serde_json::from_str(&body).unwrap();
    assert_eq!(greeting.greeting, "hello, curl");
    assert_eq!(greeting.caller, "spiffe://ligand.local/user/dev");

    // Past TLS, the policy still decides: the service's own JSON denial comes back.
    let line = credentials.curl_command(addr, "/admin/reset");
    let (status, body) = run_curl(format!("{line} --request POST")).await;
    assert_eq!(status, 403, "{body}");
    let denial: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(denial["error_code"], "POLICY_DENIED", "{body}");

    // Without a client certificate, the handshake is refused: no plaintext or anonymous path.
    let anonymous = std::process::Command::new("curl")
        .arg("--cacert")
        .arg(&credentials.bundle)
        .args(["--silent", "--show-error"])
        .arg(format!("https://127.0.0.1:{}/hello/anyone", addr.port()))
        .output()
        .unwrap();
    assert!(!anonymous.status.success(), "{anonymous:?}");
    server.close().await;
}

#[tokio::test]
async fn two_services_on_embedded_defaults_call_each_other() {
    let dev = tempfile::tempdir().unwrap();
    let greeter = service_dir(GREETER, "");
    let (greeter_server, greeter_addr) = start(greeter.path(), dev.path()).await;
    let services = format!("[services.\"{GREETER}\"]\nendpoints = [\"{greeter_addr}\"]\n");

    let front = service_dir(FRONT, &services);
    let (front_server, _) = start(front.path(), dev.path()).await;
    let greeting = front_server
        .client::<GreeterApiClient>()
        .hello("front")
        .await
        .unwrap();
    assert_eq!(greeting.greeting, "hello, front");
    assert_eq!(
        greeting.caller, FRONT,
        "the greeter verified the front's SVID"
    );

    // A service on another development folder has another CA: neither side trusts it.
    let elsewhere = tempfile::tempdir().unwrap();
    let stranger = service_dir(FRONT, &services);
    let (stranger_server, _) = start(stranger.path(), elsewhere.path()).await;
    let refused = stranger_server
        .client::<GreeterApiClient>()
        .hello("stranger")
        .await;
    assert!(refused.is_err(), "{refused:?}");

    for server in [front_server, stranger_server, greeter_server] {
        server.close().await;
    }
}

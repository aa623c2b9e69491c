//! The sidecar: nginx terminating mTLS in front of the backend, with a configuration written
//! into the run's temporary directory.

use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::Result;
use crate::identity::CertPaths;
use crate::process::Spawned;

/// Requests per keep-alive connection, client side and upstream side. nginx's default (1000)
/// would close each load connection about every thirty milliseconds at full load and add TLS
/// handshakes that the Rust servers, which keep connections open, never pay.
const KEEPALIVE_REQUESTS: u32 = 1_000_000;

/// Idle keep-alive connections each worker keeps to the backend.
const UPSTREAM_KEEPALIVE: u32 = 64;

/// The sidecar's configuration: `daemon off` so that the harness's child is the master,
/// one worker per core, TLS 1.3 only with client certificates verified against the run's
/// CA, an access log line per request (the sidecar's audit trail, as Ligand writes one per
/// decision), and a keep-alive pool to the backend on `backend_port`. Every path it writes
/// is under `prefix`.
pub(crate) fn config(prefix: &Path, certs: &CertPaths, port: u16, backend_port: u16) -> String {
    let path = |p: PathBuf| p.display().to_string();
    let at = |name: &str| path(prefix.join(name));
    let loopback = Ipv4Addr::LOCALHOST;
    format!(
        r#"daemon off;
master_process on;
worker_processes auto;
pid "{pid}";
error_log "{error_log}" warn;

events {{
    worker_connections 4096;
}}

http {{
    access_log "{access_log}";
    client_body_temp_path "{temp}/client_body";
    proxy_temp_path "{temp}/proxy";
    fastcgi_temp_path "{temp}/fastcgi";
    uwsgi_temp_path "{temp}/uwsgi";
    scgi_temp_path "{temp}/scgi";
    keepalive_requests {KEEPALIVE_REQUESTS};
    keepalive_timeout 75s;

    upstream backend {{
        server {loopback}:{backend_port};
        keepalive {UPSTREAM_KEEPALIVE};
        keepalive_requests {KEEPALIVE_REQUESTS};
    }}

    server {{
        listen {loopback}:{port} ssl;
        ssl_protocols TLSv1.3;
        ssl_certificate "{server_cert}";
        ssl_certificate_key "{server_key}";
        ssl_client_certificate "{ca}";
        ssl_verify_client on;

        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"#,
        pid = at("nginx.pid"),
        error_log = at("error.log"),
        access_log = at("access.log"),
        temp = at("temp"),
        server_cert = path(certs.server_cert()),
        server_key = path(certs.server_key()),
        ca = path(certs.ca()),
    )
}

/// Writes the configuration under `prefix` and starts nginx on it (`-e` so that nothing,
/// not even startup errors, goes to the system's log directory).
pub(crate) fn start(
    nginx: &Path,
    prefix: &Path,
    certs: &CertPaths,
    port: u16,
    backend_port: u16,
) -> Result<Spawned> {
    fs::create_dir_all(prefix.join("temp"))?;
    let conf = prefix.join("nginx.conf");
    fs::write(&conf, config(prefix, certs, port, backend_port))?;
    let mut command = Command::new(nginx);
    command
        .arg("-p")
        .arg(prefix)
        .arg("-e")
        .arg(prefix.join("error.log"))
        .arg("-c")
        .arg(&conf);
    Spawned::start("nginx", &mut command, &prefix.join("stderr.log"))
}

/// `nginx -v`, for the report.
pub(crate) fn version(nginx: &Path) -> Result<String> {
    let output = Command::new(nginx).arg("-v").output().map_err(|e| {
        format!(
            "cannot run {} ({e}); scripts/bench-load installs it with apt-get",
            nginx.display()
        )
    })?;
    // nginx prints its version on stderr.
    Ok(String::from_utf8_lossy(&output.stderr).trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_terminates_mtls_13_and_pools_upstream_connections() {
        let certs = CertPaths::new(Path::new("/run/x/certs"));
        let text = config(Path::new("/run/x/nginx"), &certs, 9443, 9080);
        for directive in [
            "daemon off;",
            "listen 127.0.0.1:9443 ssl;",
            "ssl_protocols TLSv1.3;",
            "ssl_verify_client on;",
            "ssl_client_certificate \"/run/x/certs/ca.pem\";",
            "ssl_certificate \"/run/x/certs/server.pem\";",
            "server 127.0.0.1:9080;",
            "keepalive 64;",
            "proxy_http_version 1.1;",
            "proxy_set_header Connection \"\";",
            "access_log \"/run/x/nginx/access.log\";",
        ] {
            assert!(text.contains(directive), "missing {directive}\n{text}");
        }
        assert_eq!(text.matches("keepalive_requests 1000000;").count(), 2);
    }
}

//! A real `redis-server` on a free loopback port, killed on drop: for the tests of the
//! providers that keep state in Redis or Valkey.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test fixture: a server that cannot start fails the test that asked for it"
)]

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a freshly spawned server may take to answer `PING`.
const STARTUP_DEADLINE: Duration = Duration::from_secs(10);

/// TLS settings for a `rediss://` server: its certificate, key and the CA its clients use.
#[derive(Debug, Clone)]
pub struct RedisTlsFiles {
    /// The server's certificate (PEM).
    pub cert: PathBuf,
    /// The server's private key (PEM).
    pub key: PathBuf,
    /// The CA that signed the certificate, for clients (PEM).
    pub ca: PathBuf,
}

/// A `redis-server` child process.
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    tls: Option<RedisTlsFiles>,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts `redis-server` on a free loopback port, without persistence, and waits until it
    /// answers `PING`. Panics (failing the test) when `redis-server` is not installed.
    pub fn start() -> Self {
        Self::start_with(None)
    }

    /// Starts a TLS-only `redis-server` (client certificates not required).
    pub fn start_tls(tls: RedisTlsFiles) -> Self {
        Self::start_with(Some(tls))
    }

    fn start_with(tls: Option<RedisTlsFiles>) -> Self {
        // Another process may take the port between our probe and the server's bind: retry
        // with a new port a few times.
        let mut last_error = String::new();
        for _ in 0..5 {
            let mut server = Self {
                port: unused_loopback_port(),
                tls: tls.clone(),
                child: None,
            };
            match server.spawn() {
                Ok(()) => return server,
                Err(error) => last_error = error,
            }
        }
        panic!("redis-server did not start: {last_error}");
    }

    /// `redis://127.0.0.1:PORT` (or `rediss://localhost:PORT` for TLS).
    pub fn url(&self) -> String {
        match self.tls {
            None => format!("redis://127.0.0.1:{}", self.port),
            Some(_) => format!("rediss://localhost:{}", self.port),
        }
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills the server (SIGKILL: no clean shutdown, as in a crash).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts a new server on the same port, with an empty dataset.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn()
            .unwrap_or_else(|error| panic!("redis-server did not restart: {error}"));
    }

    fn spawn(&mut self) -> Result<(), String> {
        let port = self.port.to_string();
        let mut command = Command::new("redis-server");
        command.args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]);
        command.args(["--dir", std::env::temp_dir().to_str().unwrap()]);
        match &self.tls {
            None => {
                command.args(["--port", &port]);
            }
            Some(tls) => {
                command.args(["--port", "0", "--tls-port", &port]);
                command.arg("--tls-cert-file").arg(&tls.cert);
                command.arg("--tls-key-file").arg(&tls.key);
                command.arg("--tls-ca-cert-file").arg(&tls.ca);
                command.args(["--tls-auth-clients", "no"]);
            }
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|error| {
                if error.kind() == std::io::ErrorKind::NotFound {
                    panic!(
                        "redis-server is not installed: tests against Redis need it \
                         (apt-get install redis-server, or run scripts/test, which installs it)"
                    )
                }
                format!("spawning redis-server: {error}")
            })?;
        self.child = Some(child);
        self.wait_until_listening()
    }

    /// Polls until the port answers (a PING for plain servers, an accepted TCP connection for
    /// TLS ones), bounded by [`STARTUP_DEADLINE`]: the process needs a moment to bind.
    fn wait_until_listening(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + STARTUP_DEADLINE;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                let mut stderr = String::new();
                if let Some(mut pipe) = child.stderr.take() {
                    let _ = pipe.read_to_string(&mut stderr);
                }
                self.child = None;
                return Err(format!("exited with {status}: {stderr}"));
            }
            if let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(100)) {
                if self.tls.is_some() {
                    return Ok(());
                }
                stream
                    .set_read_timeout(Some(Duration::from_millis(500)))
                    .unwrap();
                let mut reply = [0u8; 7];
                if stream.write_all(b"PING\r\n").is_ok()
                    && stream.read_exact(&mut reply).is_ok()
                    && &reply == b"+PONG\r\n"
                {
                    return Ok(());
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
        Err(format!(
            "no answer on port {} within {STARTUP_DEADLINE:?}",
            self.port
        ))
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A loopback port nothing listens on right now (for a backend that must be unreachable).
pub fn unused_loopback_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl RedisTlsFiles {
    /// Writes a CA and a `localhost` server certificate it signed into `dir`.
    pub fn generate(dir: &Path) -> Self {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let server_key = KeyPair::generate().unwrap();
        let server = CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .signed_by(
                &server_key,
                &rcgen::Issuer::from_params(&ca_params, &ca_key),
            )
            .unwrap();
        std::fs::create_dir_all(dir).unwrap();
        let files = RedisTlsFiles {
            cert: dir.join("server.pem"),
            key: dir.join("server.key"),
            ca: dir.join("ca.pem"),
        };
        std::fs::write(&files.cert, server.pem()).unwrap();
        std::fs::write(&files.key, server_key.serialize_pem()).unwrap();
        std::fs::write(&files.ca, ca.pem()).unwrap();
        files
    }
}

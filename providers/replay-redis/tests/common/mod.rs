//! A real `redis-server` on a free loopback port, killed on drop.
#![allow(
    dead_code,
    unreachable_pub,
    reason = "shared with the Redis rate limiter's fixture; this crate uses a subset"
)]
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test fixtures")]

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a freshly spawned server may take to answer `PING`.
const STARTUP_DEADLINE: Duration = Duration::from_secs(10);

/// TLS settings for a `rediss://` server: its certificate, key and the CA its clients use.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

/// A `redis-server` child process.
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    tls: Option<TlsFiles>,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts `redis-server` on a free loopback port, without persistence, and waits until it
    /// answers `PING`. Panics (failing the test) when `redis-server` is not installed.
    pub fn start() -> Self {
        Self::start_with(None)
    }

    /// Starts a TLS-only `redis-server` (client certificates not required).
    pub fn start_tls(tls: TlsFiles) -> Self {
        Self::start_with(Some(tls))
    }

    fn start_with(tls: Option<TlsFiles>) -> Self {
        // Another process may take the port between our probe and the server's bind: retry
        // with a new port a few times.
        let mut last_error = String::new();
        for _ in 0..5 {
            let mut server = Self {
                port: free_port(),
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
                        "redis-server is not installed: the Redis replay cache's tests need it \
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

/// A loopback port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

//! A real `etcd` on free loopback ports with a temporary data dir, killed on drop.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a freshly spawned server may take to report itself healthy.
const STARTUP_DEADLINE: Duration = Duration::from_secs(20);

/// An `etcd` child process.
#[derive(Debug)]
pub(crate) struct EtcdServer {
    client_port: u16,
    peer_port: u16,
    data: tempfile::TempDir,
    child: Option<Child>,
}

impl EtcdServer {
    /// Starts `etcd` and waits until `/health` answers. Panics (failing the test) when `etcd`
    /// is not installed.
    pub(crate) fn start() -> Self {
        let mut last_error = String::new();
        // Another process may take a port between our probe and etcd's bind: retry.
        for _ in 0..5 {
            let mut server = Self {
                client_port: free_port(),
                peer_port: free_port(),
                data: tempfile::tempdir().expect("temp dir"),
                child: None,
            };
            match server.spawn() {
                Ok(()) => return server,
                Err(error) => last_error = error,
            }
        }
        panic!("etcd did not start: {last_error}");
    }

    /// `http://127.0.0.1:PORT`.
    pub(crate) fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// Kills the server (SIGKILL, as in a crash).
    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same ports and data dir: the data survives.
    pub(crate) fn restart(&mut self) {
        self.kill();
        self.spawn()
            .unwrap_or_else(|error| panic!("etcd did not restart: {error}"));
    }

    fn spawn(&mut self) -> Result<(), String> {
        let client = self.url();
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let child = Command::new("etcd")
            .arg("--name=test")
            .arg(format!("--data-dir={}", self.data.path().display()))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=test={peer}"))
            .arg("--log-level=error")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|error| {
                if error.kind() == std::io::ErrorKind::NotFound {
                    panic!(
                        "etcd is not installed: the etcd registry's tests need it \
                         (apt-get install etcd-server, or run scripts/test, which installs it)"
                    )
                }
                format!("spawning etcd: {error}")
            })?;
        self.child = Some(child);
        self.wait_until_healthy()
    }

    /// Polls `GET /health` until it says `true`, bounded by [`STARTUP_DEADLINE`].
    fn wait_until_healthy(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + STARTUP_DEADLINE;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.client_port));
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
                let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
                let mut reply = String::new();
                if stream
                    .write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
                    .is_ok()
                    && stream.read_to_string(&mut reply).is_ok()
                    && reply.contains("\"health\":\"true\"")
                {
                    return Ok(());
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!("not healthy within {STARTUP_DEADLINE:?}"))
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A loopback port free at the time of asking.
pub(crate) fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("free port")
}

//! The processes the harness starts, stopped by PID: SIGTERM, then SIGKILL after a grace
//! period, always (on drop too, so an error or a panic in the orchestrator stops them).

use std::fs::File;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process};

use crate::{Result, procfs};

/// How long a process may take to exit after SIGTERM before it gets SIGKILL.
const GRACE: Duration = Duration::from_secs(5);

/// How often a wait checks on the process.
const POLL: Duration = Duration::from_millis(20);

/// A started process.
#[derive(Debug)]
pub(crate) struct Spawned {
    /// What it is, for messages.
    name: String,
    /// The process.
    child: Child,
    /// Processes it started itself (nginx's workers) and their executable name: stopped
    /// with it, because a worker outlives a master killed with SIGKILL.
    helpers: Vec<(u32, String)>,
    /// Set once it has exited and been reaped.
    exited: Option<ExitStatus>,
}

impl Spawned {
    /// Starts `command` with stdout and stderr appended to `log` (created).
    pub(crate) fn start(name: &str, command: &mut Command, log: &Path) -> Result<Self> {
        let stdout = File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
        let stderr = stdout.try_clone()?;
        let child = command
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("starting {name} ({:?}): {e}", command.get_program()))?;
        Ok(Self {
            name: name.to_owned(),
            child,
            helpers: Vec::new(),
            exited: None,
        })
    }

    /// Starts `command` with its stdout piped (see [`take_stdout`](Self::take_stdout)) and
    /// stderr to `log`.
    pub(crate) fn start_piped(name: &str, command: &mut Command, log: &Path) -> Result<Self> {
        let stderr = File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("starting {name} ({:?}): {e}", command.get_program()))?;
        Ok(Self {
            name: name.to_owned(),
            child,
            helpers: Vec::new(),
            exited: None,
        })
    }

    /// The process's PID.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The piped stdout, once.
    pub(crate) fn take_stdout(&mut self) -> Option<std::process::ChildStdout> {
        self.child.stdout.take()
    }

    /// Records the current children of the process as its helpers and returns their PIDs.
    pub(crate) fn adopt_children(&mut self) -> Vec<u32> {
        self.helpers = procfs::children(self.pid())
            .into_iter()
            .filter_map(|pid| Some((pid, procfs::stat(pid).ok()?.comm)))
            .collect();
        self.helpers.iter().map(|(pid, _)| *pid).collect()
    }

    /// An error naming the process when it has already exited.
    pub(crate) fn ensure_running(&mut self) -> Result<()> {
        match self.try_wait()? {
            Some(status) => Err(format!("{} exited early ({status})", self.name).into()),
            None => Ok(()),
        }
    }

    /// Waits until the process exits or `timeout` passes; `None` on timeout.
    pub(crate) fn wait_timeout(&mut self, timeout: Duration) -> Result<Option<ExitStatus>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_wait()? {
                return Ok(Some(status));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            thread::sleep(POLL);
        }
    }

    /// Stops the process and its helpers: SIGTERM, then SIGKILL after [`GRACE`]; reaps it.
    pub(crate) fn stop(&mut self) {
        if self.exited.is_some() {
            self.kill_helpers();
            return;
        }
        signal(self.pid(), Signal::TERM);
        if !matches!(self.wait_timeout(GRACE), Ok(Some(_))) {
            eprintln!(
                "{} ignored SIGTERM for {GRACE:?}; sending SIGKILL",
                self.name
            );
            signal(self.pid(), Signal::KILL);
            let _ = self.child.wait();
        }
        self.kill_helpers();
    }

    /// SIGKILL to every helper still alive under its recorded name. A helper that already
    /// exited is skipped; the name check keeps a reused PID from being hit.
    fn kill_helpers(&mut self) {
        for (pid, comm) in std::mem::take(&mut self.helpers) {
            if procfs::stat(pid).is_ok_and(|s| s.comm == comm) {
                signal(pid, Signal::KILL);
            }
        }
    }

    /// `try_wait`, remembering the exit.
    fn try_wait(&mut self) -> Result<Option<ExitStatus>> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait()?;
        }
        Ok(self.exited)
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Sends `signal` to `pid`; a process that is already gone is not an error.
fn signal(pid: u32, signal: Signal) {
    let pid = i32::try_from(pid).ok().and_then(Pid::from_raw);
    if let Some(pid) = pid {
        let _ = kill_process(pid, signal);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_ends_a_process_that_would_run_on() {
        let dir = tempfile::tempdir().unwrap();
        let mut sleeper = Spawned::start(
            "sleep",
            Command::new("sleep").arg("60"),
            &dir.path().join("sleep.log"),
        )
        .unwrap();
        sleeper.ensure_running().unwrap();
        let started = Instant::now();
        sleeper.stop();
        assert!(started.elapsed() < GRACE);
        assert!(sleeper.ensure_running().is_err());
    }
}

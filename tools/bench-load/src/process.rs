//! The processes the harness starts, stopped by PID: SIGTERM, then SIGKILL after a grace
//! period, always: on drop too, so an error or a panic in the orchestrator stops them, and on
//! SIGINT, SIGTERM or SIGHUP to the orchestrator (see [`stop_all_on_signal`]).

use std::fs::File;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process};

use crate::{Result, procfs};

/// How long a process may take to exit after SIGTERM before it gets SIGKILL.
const GRACE: Duration = Duration::from_secs(5);

/// How often a wait checks on the process.
const POLL: Duration = Duration::from_millis(20);

/// A live process: its PID and, for helpers, its executable name (the harness did not get
/// a helper's PID from `spawn`, so a reused PID must not be mistaken for it).
type LiveProcess = (u32, Option<String>);

/// Every process started and not yet stopped.
static LIVE: Mutex<Vec<LiveProcess>> = Mutex::new(Vec::new());

/// The live processes; a panic while the list was held leaves it usable.
fn live() -> MutexGuard<'static, Vec<LiveProcess>> {
    LIVE.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// On SIGINT, SIGTERM or SIGHUP, stops every live process (SIGTERM, then SIGKILL after
/// [`GRACE`]) and exits, so that an interrupted run leaves no server behind.
pub(crate) fn stop_all_on_signal() -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // Registered before returning, so that no signal arrives unhandled in between.
    let (mut int, mut term, mut hup) = runtime.block_on(async {
        Ok::<_, std::io::Error>((
            signal(SignalKind::interrupt())?,
            signal(SignalKind::terminate())?,
            signal(SignalKind::hangup())?,
        ))
    })?;
    thread::spawn(move || {
        runtime.block_on(async {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
                _ = hup.recv() => {}
            }
        });
        eprintln!("interrupted: stopping every process the harness started");
        let processes = std::mem::take(&mut *live());
        for (pid, _) in &processes {
            signal_pid(*pid, Signal::TERM);
        }
        let deadline = Instant::now() + GRACE;
        while Instant::now() < deadline
            && processes
                .iter()
                .any(|(pid, comm)| running(*pid, comm.as_deref()))
        {
            thread::sleep(POLL);
        }
        for (pid, comm) in &processes {
            if running(*pid, comm.as_deref()) {
                signal_pid(*pid, Signal::KILL);
            }
        }
        std::process::exit(130);
    });
    Ok(())
}

/// Whether `pid` is running (not exited, not a zombie), under the name `comm` when given.
fn running(pid: u32, comm: Option<&str>) -> bool {
    procfs::stat(pid).is_ok_and(|s| s.state != 'Z' && comm.is_none_or(|c| s.comm == c))
}

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
    /// Starts `command` with stdout and stderr written to `log` (created).
    pub(crate) fn start(name: &str, command: &mut Command, log: &Path) -> Result<Self> {
        let stdout = File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
        let stderr = stdout.try_clone()?;
        Self::spawn(name, command.stdout(stdout).stderr(stderr))
    }

    /// Starts `command` with its stdout piped (see [`take_stdout`](Self::take_stdout)) and
    /// stderr to `log`.
    pub(crate) fn start_piped(name: &str, command: &mut Command, log: &Path) -> Result<Self> {
        let stderr = File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
        Self::spawn(name, command.stdout(Stdio::piped()).stderr(stderr))
    }

    /// Spawns `command` and adds it to the live processes.
    fn spawn(name: &str, command: &mut Command) -> Result<Self> {
        // Held across the spawn, so that a signal handled meanwhile waits for the new PID.
        let mut live = live();
        let child = command
            .stdin(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting {name} ({:?}): {e}", command.get_program()))?;
        live.push((child.id(), None));
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
        let mut live = live();
        live.retain(|(pid, _)| !self.helpers.iter().any(|(helper, _)| helper == pid));
        self.helpers = procfs::children(self.pid())
            .into_iter()
            .filter_map(|pid| Some((pid, procfs::stat(pid).ok()?.comm)))
            .collect();
        live.extend(
            self.helpers
                .iter()
                .map(|(pid, comm)| (*pid, Some(comm.clone()))),
        );
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
        if self.exited.is_none() {
            signal_pid(self.pid(), Signal::TERM);
            if !matches!(self.wait_timeout(GRACE), Ok(Some(_))) {
                eprintln!(
                    "{} ignored SIGTERM for {GRACE:?}; sending SIGKILL",
                    self.name
                );
                signal_pid(self.pid(), Signal::KILL);
                let _ = self.child.wait();
            }
        }
        self.kill_helpers();
        let pid = self.pid();
        live().retain(|(live, _)| *live != pid);
    }

    /// SIGKILL to every helper still running under its recorded name. A helper that already
    /// exited is skipped; the name check keeps a reused PID from being hit.
    fn kill_helpers(&mut self) {
        let helpers = std::mem::take(&mut self.helpers);
        for (pid, comm) in &helpers {
            if running(*pid, Some(comm)) {
                signal_pid(*pid, Signal::KILL);
            }
        }
        live().retain(|(live, _)| !helpers.iter().any(|(pid, _)| pid == live));
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
fn signal_pid(pid: u32, signal: Signal) {
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
        assert!(running(sleeper.pid(), None));
        assert!(live().iter().any(|(pid, _)| *pid == sleeper.pid()));
        let started = Instant::now();
        sleeper.stop();
        assert!(started.elapsed() < GRACE);
        assert!(sleeper.ensure_running().is_err());
        assert!(!running(sleeper.pid(), None));
        assert!(!live().iter().any(|(pid, _)| *pid == sleeper.pid()));
    }
}

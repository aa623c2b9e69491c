//! Caller attestation by the kernel: SO_PEERCRED on the accepted unix stream, and the caller's
//! executable from `/proc/<pid>/exe`. Nothing the client sends is trusted.
//!
//! SO_PEERCRED names the process that connected, but the connection outlives what was
//! attested: the process can execute another program (keeping the socket) or exit and leave
//! the socket to a process it shared it with, and its pid can be reused. So the attested
//! process is identified by its pid and its start time, and before an SVID is sent the agent
//! checks that this same process still runs the same executable ([`PeerInfo::recheck`]).

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use tokio::net::UnixStream;

/// How many times `/proc/<pid>/exe` is read before giving up, and the first and last delay
/// between reads: the entry can be briefly unreadable right after the process starts.
const EXE_ATTEMPTS: u32 = 4;
const EXE_FIRST_DELAY: Duration = Duration::from_millis(1);
const EXE_MAX_DELAY: Duration = Duration::from_millis(5);

/// A property of a caller that a registration entry can require.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Selector {
    /// `unix:uid:N`: the caller's user ID.
    Uid(u32),
    /// `unix:gid:N`: the caller's primary group ID.
    Gid(u32),
    /// `unix:path:/abs/path`: the caller's executable.
    Path(PathBuf),
}

/// Why a selector string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SelectorError {
    /// Not of the form `unix:<kind>:<value>`.
    #[error(
        "`{0}` is not a selector such as unix:uid:1000, unix:gid:1000 or unix:path:/usr/bin/app"
    )]
    Malformed(String),
    /// An unknown kind after `unix:`.
    #[error("unknown selector kind `{0}` (expected uid, gid or path)")]
    UnknownKind(String),
    /// A uid or gid that is not a number.
    #[error("`{0}` is not a numeric id")]
    NotNumeric(String),
    /// A path that is not absolute.
    #[error("`{0}` is not an absolute path")]
    RelativePath(String),
}

impl FromStr for Selector {
    type Err = SelectorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let rest = s
            .strip_prefix("unix:")
            .ok_or_else(|| SelectorError::Malformed(s.to_owned()))?;
        let (kind, value) = rest
            .split_once(':')
            .ok_or_else(|| SelectorError::Malformed(s.to_owned()))?;
        let id = |v: &str| {
            v.parse::<u32>()
                .map_err(|_| SelectorError::NotNumeric(v.to_owned()))
        };
        match kind {
            "uid" => id(value).map(Self::Uid),
            "gid" => id(value).map(Self::Gid),
            "path" if value.starts_with('/') => Ok(Self::Path(PathBuf::from(value))),
            "path" => Err(SelectorError::RelativePath(value.to_owned())),
            other => Err(SelectorError::UnknownKind(other.to_owned())),
        }
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Uid(uid) => write!(f, "unix:uid:{uid}"),
            Self::Gid(gid) => write!(f, "unix:gid:{gid}"),
            Self::Path(path) => write!(f, "unix:path:{}", path.display()),
        }
    }
}

/// What the kernel says about the process at the other end of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PeerInfo {
    /// The process ID at connect time.
    pub pid: i32,
    /// The effective user ID.
    pub uid: u32,
    /// The effective group ID.
    pub gid: u32,
    /// The executable, when `/proc` could tell.
    pub exe: Option<PathBuf>,
    /// The process's start time (clock ticks after boot, `/proc/<pid>/stat`): with the pid, it
    /// names one process even after the pid is reused.
    start_time: Option<u64>,
}

impl PeerInfo {
    /// The selectors this caller holds.
    pub fn selectors(&self) -> Vec<Selector> {
        let mut selectors = vec![Selector::Uid(self.uid), Selector::Gid(self.gid)];
        selectors.extend(self.exe.clone().map(Selector::Path));
        selectors
    }
}

/// Why a caller could not be attested; the connection is refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AttestError {
    /// SO_PEERCRED failed.
    #[error("cannot read peer credentials")]
    PeerCred(#[source] std::io::Error),
    /// The attested process is gone (its pid now names another process or none), or it runs
    /// another executable than when it was attested.
    #[error("caller process {pid} changed since it was attested: {what}")]
    Changed {
        /// The attested pid.
        pid: i32,
        /// What changed.
        what: &'static str,
    },
    /// The kernel reported no usable process ID.
    #[error("peer credentials carry no valid pid ({0:?})")]
    InvalidPid(Option<i32>),
}

/// Reads the peer's credentials from the kernel and resolves its executable.
pub(crate) async fn attest(stream: &UnixStream) -> Result<PeerInfo, AttestError> {
    let cred = stream.peer_cred().map_err(AttestError::PeerCred)?;
    let pid = match cred.pid() {
        Some(pid) if pid >= 1 => pid,
        other => return Err(AttestError::InvalidPid(other)),
    };
    let start_time = start_time(pid).await;
    let exe = exe_path(pid).await;
    Ok(PeerInfo {
        pid,
        uid: cred.uid(),
        gid: cred.gid(),
        exe,
        start_time,
    })
}

impl PeerInfo {
    /// Checks that the attested process still exists as the same process (same start time)
    /// running the same executable. The Workload API calls it after building a response that
    /// carries an SVID and before sending it, so a caller that executed another program since
    /// it was attested, or whose pid now names another process, gets nothing.
    pub async fn recheck(&self) -> Result<(), AttestError> {
        let changed = |what| AttestError::Changed {
            pid: self.pid,
            what,
        };
        if start_time(self.pid).await != self.start_time {
            return Err(changed("the process exited (its pid is gone or reused)"));
        }
        if exe_path(self.pid).await != self.exe {
            return Err(changed("it executed another program"));
        }
        // The executable was read after the start time: check again that it was read from the
        // same process, not from a new one that took the pid in between.
        if start_time(self.pid).await != self.start_time {
            return Err(changed("the process exited (its pid is gone or reused)"));
        }
        Ok(())
    }
}

/// Field 22 of `/proc/<pid>/stat`: the process's start time in clock ticks after boot. The
/// command name (field 2) may hold spaces and parentheses, so fields are counted after its
/// last `)`.
async fn start_time(pid: i32) -> Option<u64> {
    let stat = tokio::fs::read_to_string(format!("/proc/{pid}/stat"))
        .await
        .ok()?;
    parse_start_time(&stat)
}

fn parse_start_time(stat: &str) -> Option<u64> {
    let (_, after_comm) = stat.rsplit_once(')')?;
    // after_comm starts with field 3 (state); field 22 is the 20th from there.
    after_comm.split_whitespace().nth(19)?.parse().ok()
}

/// `/proc/<pid>/exe`, retried briefly with backoff for `/proc` races. `None` when unreadable:
/// path selectors then do not match, which denies rather than guesses.
async fn exe_path(pid: i32) -> Option<PathBuf> {
    let link = format!("/proc/{pid}/exe");
    let mut delay = EXE_FIRST_DELAY;
    for attempt in 1..=EXE_ATTEMPTS {
        match tokio::fs::read_link(&link).await {
            Ok(path) => return Some(path),
            Err(error) if attempt == EXE_ATTEMPTS => {
                tracing::warn!(pid, %error, "cannot resolve caller executable; path selectors will not match");
            }
            Err(_) => {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(EXE_MAX_DELAY);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use proptest::prelude::*;

    use super::*;

    #[test]
    fn parses_each_kind() {
        assert_eq!("unix:uid:1000".parse(), Ok(Selector::Uid(1000)));
        assert_eq!("unix:gid:0".parse(), Ok(Selector::Gid(0)));
        assert_eq!(
            "unix:path:/usr/bin/app".parse(),
            Ok(Selector::Path("/usr/bin/app".into()))
        );
    }

    #[test]
    fn refuses_bad_selectors() {
        assert!(matches!(
            "uid:1".parse::<Selector>(),
            Err(SelectorError::Malformed(_))
        ));
        assert!(matches!(
            "unix:pid:1".parse::<Selector>(),
            Err(SelectorError::UnknownKind(_))
        ));
        assert!(matches!(
            "unix:uid:-1".parse::<Selector>(),
            Err(SelectorError::NotNumeric(_))
        ));
        assert!(matches!(
            "unix:path:bin/app".parse::<Selector>(),
            Err(SelectorError::RelativePath(_))
        ));
    }

    #[tokio::test]
    async fn attests_own_process() {
        let (a, _b) = UnixStream::pair().unwrap();
        let peer = attest(&a).await.unwrap();
        assert_eq!(peer.pid, i32::try_from(std::process::id()).unwrap());
        assert_eq!(peer.uid, rustix::process::geteuid().as_raw());
        assert_eq!(peer.exe, Some(std::env::current_exe().unwrap()));
        assert!(peer.start_time.is_some());
        peer.recheck().await.unwrap();
    }

    #[tokio::test]
    async fn recheck_refuses_another_process_or_executable() {
        let (a, _b) = UnixStream::pair().unwrap();
        let peer = attest(&a).await.unwrap();
        let reused = PeerInfo {
            start_time: peer.start_time.map(|t| t + 1),
            ..peer.clone()
        };
        assert!(matches!(
            reused.recheck().await,
            Err(AttestError::Changed { .. })
        ));
        let other_exe = PeerInfo {
            exe: Some("/usr/bin/something-else".into()),
            ..peer.clone()
        };
        assert!(matches!(
            other_exe.recheck().await,
            Err(AttestError::Changed { .. })
        ));
    }

    #[test]
    fn start_time_is_read_past_a_command_name_with_spaces_and_parentheses() {
        let fields: Vec<String> = (3..=52).map(|n| n.to_string()).collect();
        let stat = format!("42 (a) b (c)) {}\n", fields.join(" "));
        assert_eq!(parse_start_time(&stat), Some(22));
        assert_eq!(parse_start_time("42 (a) S 1"), None);
        assert_eq!(parse_start_time(""), None);
    }

    proptest! {
        #[test]
        fn parsing_never_panics_and_round_trips(s in ".{0,64}") {
            if let Ok(selector) = s.parse::<Selector>() {
                prop_assert_eq!(selector.to_string().parse::<Selector>(), Ok(selector));
            }
        }
    }
}

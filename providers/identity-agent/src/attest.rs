//! Caller attestation by the kernel: SO_PEERCRED on the accepted unix stream, and the caller's
//! executable from `/proc/<pid>/exe`. Nothing the client sends is trusted.

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
    let exe = exe_path(pid).await;
    Ok(PeerInfo {
        pid,
        uid: cred.uid(),
        gid: cred.gid(),
        exe,
    })
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

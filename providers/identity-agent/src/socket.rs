//! Binding the Workload API socket: a private directory, owner-only permissions, and a clear
//! difference between a stale socket (replaced) and a path that is not ours (refused).

use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tokio::net::UnixListener;

/// Why the socket could not be bound.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SocketError {
    /// The socket's directory could not be created.
    #[error("cannot create socket directory {path}")]
    Directory {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Something other than a socket exists at the path; it is left alone.
    #[error("{0} exists and is not a socket; refusing to replace it")]
    NotASocket(PathBuf),
    /// A socket owned by another user exists at the path; it is left alone.
    #[error(
        "{path} is a socket owned by uid {owner}, not by this agent (uid {own}); refusing to replace it"
    )]
    NotOurs {
        /// The socket.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// The agent's effective uid.
        own: u32,
    },
    /// A live server already listens on the path.
    #[error("{0} is in use by a running server")]
    InUse(PathBuf),
    /// Binding, inspecting or setting permissions failed.
    #[error("cannot bind {path}")]
    Io {
        /// The socket.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// Binds `path` with `mode` permissions. A missing directory is created with `mode` (plus the
/// search bit for the owner); an existing directory is left as it is.
pub(crate) fn bind(path: &Path, mode: u32) -> Result<UnixListener, SocketError> {
    let io = |source| SocketError::Io {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && !dir.exists()
    {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(mode | 0o700)
            .create(dir)
            .map_err(|source| SocketError::Directory {
                path: dir.to_owned(),
                source,
            })?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) => {
            if !meta.file_type().is_socket() {
                return Err(SocketError::NotASocket(path.to_owned()));
            }
            let own = rustix::process::geteuid().as_raw();
            if meta.uid() != own {
                return Err(SocketError::NotOurs {
                    path: path.to_owned(),
                    owner: meta.uid(),
                    own,
                });
            }
            match std::os::unix::net::UnixStream::connect(path) {
                Ok(_) => return Err(SocketError::InUse(path.to_owned())),
                Err(error) if error.kind() == ErrorKind::ConnectionRefused => {
                    tracing::warn!(path = %path.display(), "removing stale Workload API socket nobody listens on");
                    std::fs::remove_file(path).map_err(io)?;
                }
                Err(error) => return Err(io(error)),
            }
        }
        Err(error) if error.kind() == ErrorKind::NotFound => {}
        Err(error) => return Err(io(error)),
    }
    // Between bind and chmod the socket carries the umask's permissions; the 0700 directory
    // created above keeps other users away during that window.
    let listener = UnixListener::bind(path).map_err(io)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(io)?;
    tracing::info!(path = %path.display(), mode = format!("{mode:o}"), "Workload API socket bound");
    Ok(listener)
}

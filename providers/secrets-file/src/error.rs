//! Why a file secret was refused. Messages name the secret, the key and the reason; never a value.

use std::io;
use std::path::PathBuf;

use ligand_runtime::ProviderError;

/// Why the file provider could not deliver a secret (or could not be built).
///
/// Every variant is a refusal: the framework reports the secret as unavailable and the caller
/// gets no value. Messages carry names, keys, paths and modes, never a secret's content.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FileSecretsError {
    /// The configured root is not a readable directory.
    #[error("secrets root {path:?} is not a readable directory")]
    Root {
        /// The configured root.
        path: PathBuf,
        /// The I/O error, if there was one.
        #[source]
        source: Option<io::Error>,
    },
    /// The secret name is not a relative path of plain components.
    #[error("invalid secret name {name:?}: {reason}")]
    InvalidName {
        /// The name as asked for.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The name resolves (through a symbolic link) to a place outside the root.
    #[error("secret {name:?} resolves outside the secrets root")]
    OutsideRoot {
        /// The secret's name.
        name: String,
    },
    /// Neither `<root>/<name>/` nor `<root>/<name>.json` exists.
    #[error("no secret {name:?}: neither a directory nor a .json document exists")]
    NotFound {
        /// The secret's name.
        name: String,
    },
    /// Both layouts exist for one name, so which one is meant is unclear.
    #[error("secret {name:?} exists both as a directory and as a .json document")]
    Ambiguous {
        /// The secret's name.
        name: String,
    },
    /// A secret file is readable by its group or by others.
    #[error(
        "secret {name:?} file {file:?} has mode {mode:04o}: readable by group or others \
         (make it 0400 or 0600; Kubernetes: defaultMode 0400)"
    )]
    WidePermissions {
        /// The secret's name.
        name: String,
        /// The file (a key of a directory secret, or the `.json` document).
        file: String,
        /// The file's permission bits.
        mode: u32,
    },
    /// A file, or a directory on its way from the root, was a symbolic link when it was
    /// opened. Names are resolved (links included) and checked to lie under the root first;
    /// the file is then opened without following any link, so a link swapped in after the
    /// check cannot lead elsewhere.
    #[error(
        "secret {name:?} file {file:?} was reached through a symbolic link when it was opened; \
         refused, since the link may lead out of the root"
    )]
    Symlink {
        /// The secret's name.
        name: String,
        /// The file (a key of a directory secret, or the `.json` document).
        file: String,
    },
    /// The opened file is not a regular file (a directory, FIFO, device or socket swapped in
    /// after the name was resolved).
    #[error("secret {name:?} file {file:?} is not a regular file")]
    NotAFile {
        /// The secret's name.
        name: String,
        /// The file.
        file: String,
    },
    /// A key's content is not UTF-8, so it cannot be a JSON string.
    #[error("secret {name:?} key {key:?} is not valid UTF-8")]
    NotUtf8 {
        /// The secret's name.
        name: String,
        /// The key (file name).
        key: String,
    },
    /// A key's file name is not UTF-8, so it cannot be a JSON key.
    #[error("secret {name:?} has a file whose name is not valid UTF-8")]
    KeyNotUtf8 {
        /// The secret's name.
        name: String,
    },
    /// A `.json` document is not a JSON object.
    #[error("secret {name:?} document is not a JSON object")]
    NotObject {
        /// The secret's name.
        name: String,
    },
    /// A file is larger than the configured limit.
    #[error("secret {name:?} file {file:?} exceeds the {limit}-byte limit")]
    TooLarge {
        /// The secret's name.
        name: String,
        /// The file.
        file: String,
        /// The limit in bytes.
        limit: u64,
    },
    /// Reading the secret failed.
    #[error("secret {name:?} could not be read")]
    Io {
        /// The secret's name.
        name: String,
        /// The I/O error (it names paths, never content).
        #[source]
        source: io::Error,
    },
    /// The file watcher could not be started.
    #[error("watching the secrets root failed")]
    Watch(#[source] notify::Error),
}

impl From<FileSecretsError> for ProviderError {
    fn from(error: FileSecretsError) -> Self {
        ProviderError::backend(error.to_string(), error)
    }
}

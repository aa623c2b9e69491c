//! File secrets for Ligand: the embedded default [`Secrets`](ligand_runtime::Secrets) backend,
//! reading secrets from a directory tree as Kubernetes secret volumes and systemd credentials
//! lay them out, and watching it for changes.
//!
//! ```no_run
//! use ligand_secrets_file::FileSecrets;
//! use std::time::Duration;
//!
//! # fn build() -> Result<ligand_runtime::Config, ligand_secrets_file::FileSecretsError> {
//! # let (identity, policy) = (ligand_runtime::testkit::FakeIdentity::unavailable("doc"), ligand_runtime::testkit::AllowList::new());
//! let secrets = FileSecrets::builder("/run/secrets")
//!     .ttl(Duration::from_secs(300))
//!     .build()?;
//! let config = ligand_runtime::Config::builder()
//!     .identity(identity)
//!     .policy(policy)
//!     .secrets(secrets)
//!     .build();
//! # Ok(config) }
//! ```
//!
//! # Layouts
//!
//! A secret name such as `secret/data/accounts/db` is a relative path under the root, and
//! names one of:
//!
//! - **a directory** `<root>/<name>/` holding one file per key (file name = key, content =
//!   value), as Kubernetes secret volumes, `systemd` credentials (`$CREDENTIALS_DIRECTORY`)
//!   and Docker secrets mount them. The value delivered is the JSON object of key → string,
//!   `{"password":"…","username":"app"}`, which `#[ligand::secret]` structs decode. Files
//!   whose names start with `.` are ignored; when the directory holds Kubernetes' `..data`
//!   link, keys are read through it, so a read sees one consistent snapshot even while the
//!   kubelet swaps it. Contents must be UTF-8 ([`FileSecretsError::NotUtf8`] names the key).
//!   A trailing newline is **kept** unless
//!   [`trim_trailing_newline`](FileSecretsBuilder::trim_trailing_newline) is set: a value is
//!   exactly the file's bytes by default.
//! - **a JSON document** `<root>/<name>.json`, delivered byte for byte; it must be a JSON object.
//!
//! A name that exists in both layouts is refused as ambiguous.
//!
//! # Refusals
//!
//! Every refusal is a typed [`FileSecretsError`] (carried as the source of the
//! [`ProviderError`](ligand_runtime::ProviderError)) naming the secret, the key or the file,
//! and never a value:
//!
//! - names are relative paths of plain components: no `..`, no absolute path, no empty or
//!   dot-led component; the resolved path is then canonicalized and must lie under the root,
//!   so a symbolic link cannot lead out of it. The file is then opened one component at a
//!   time from the root with `O_NOFOLLOW`, so a link swapped in after the check is refused
//!   ([`FileSecretsError::Symlink`]) rather than followed, and every check that follows (a
//!   regular file, mode, size) is made on the opened handle, not on the path;
//! - a file readable by its group or by others (`mode & 0o077 != 0`) is refused; for
//!   Kubernetes set `defaultMode: 0400` on the secret volume. Only
//!   [`danger_allow_wide_permissions`](FileSecretsBuilder::danger_allow_wide_permissions)
//!   turns this off, for development;
//! - files over [`DEFAULT_MAX_FILE_BYTES`] (configurable) are refused.
//!
//! # Changes and leases
//!
//! Values have no TTL by default ([`ttl`](FileSecretsBuilder::ttl) sets one). Each value
//! carries a lease ID made of its name and a keyed fingerprint of its content (the key is
//! random per process, so the ID reveals nothing about the content). A `notify` watcher on the
//! root, debounced, re-reads every secret handed out after any change and sends a
//! [`SecretRevocation`](ligand_runtime::SecretRevocation) for each lease whose content changed
//! or vanished; the framework's cache evicts it and reads again, so the service sees the new
//! value (or, if the secret is gone, an error) without a restart.
//!
//! Secret bytes are held in `Zeroizing` buffers, sized up front so that no reallocation leaves
//! a copy behind, until they are handed to the framework, which keeps them in `SecretSlice`.

#![forbid(unsafe_code)]

mod error;
mod name;
mod provider;
mod read;
mod watch;

pub use self::error::FileSecretsError;
pub use self::provider::{
    DEFAULT_DEBOUNCE, DEFAULT_MAX_FILE_BYTES, FileSecrets, FileSecretsBuilder,
};

//! The provider: configuration, the `Secrets` implementation and lease bookkeeping.

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, RandomState};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use ligand_runtime::{ProviderContext, ProviderError, SecretRevocation, SecretValue, Secrets};
use tokio::sync::mpsc;

use crate::error::FileSecretsError;
use crate::read::{ReadOptions, read_secret};
use crate::watch::Watch;

/// The default quiet period after a filesystem event before changed secrets are re-read.
pub const DEFAULT_DEBOUNCE: Duration = Duration::from_millis(100);

/// The default largest file accepted, key or document (1 MiB).
pub const DEFAULT_MAX_FILE_BYTES: u64 = 1024 * 1024;

/// Capacity of each revocation channel.
const REVOCATION_CHANNEL: usize = 64;

/// Secrets read from files under one root directory. See the [crate docs](crate) for the
/// layouts, the permission rule and change detection.
///
/// Cheap to clone; every clone is the same provider.
#[derive(Clone)]
pub struct FileSecrets {
    shared: Arc<Shared>,
}

pub(crate) struct Shared {
    pub(crate) root: PathBuf,
    options: ReadOptions,
    ttl: Option<Duration>,
    pub(crate) debounce: Duration,
    /// Keys the lease fingerprints: random per process, so a lease ID reveals nothing about
    /// the content it was derived from.
    hasher: RandomState,
    /// The lease handed out last for each name.
    leases: Mutex<HashMap<String, String>>,
    pub(crate) subscribers: Mutex<Vec<mpsc::Sender<SecretRevocation>>>,
    watch: Mutex<Option<Watch>>,
    closed: std::sync::atomic::AtomicBool,
}

/// Locks a mutex whose data stays consistent even if a holder panicked (every critical
/// section here is a single insert, remove or swap).
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl fmt::Debug for FileSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileSecrets")
            .field("root", &self.shared.root)
            .field("ttl", &self.shared.ttl)
            .field("options", &self.shared.options)
            .finish_non_exhaustive()
    }
}

// === impl FileSecretsBuilder ===

/// Configures a [`FileSecrets`]; obtained from [`FileSecrets::builder`].
#[derive(Debug, Clone)]
pub struct FileSecretsBuilder {
    root: PathBuf,
    options: ReadOptions,
    ttl: Option<Duration>,
    debounce: Duration,
}

impl FileSecretsBuilder {
    /// How long a value stays valid in the framework's cache before it is read again.
    /// Default: no expiry (changes still arrive through the watcher).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Strips one trailing `\n` (or `\r\n`) from each key's file in the directory layout.
    /// Default: off, so a value is exactly the file's bytes; turn it on for files written
    /// with `echo` or an editor. JSON documents are never altered.
    pub fn trim_trailing_newline(mut self, trim: bool) -> Self {
        self.options.trim_trailing_newline = trim;
        self
    }

    /// The quiet period after a filesystem event before secrets are re-read (default
    /// [`DEFAULT_DEBOUNCE`]); a burst of writes (a Kubernetes update) becomes one re-read.
    pub fn debounce(mut self, debounce: Duration) -> Self {
        self.debounce = debounce;
        self
    }

    /// The largest file accepted (default [`DEFAULT_MAX_FILE_BYTES`]).
    pub fn max_file_bytes(mut self, limit: u64) -> Self {
        self.options.max_file_bytes = limit;
        self
    }

    /// **Development only.** Accepts secret files readable by their group or by others.
    /// Without it such files are refused ([`FileSecretsError::WidePermissions`]): on a shared
    /// machine, anyone who can read the file has the secret.
    pub fn danger_allow_wide_permissions(mut self) -> Self {
        tracing::warn!(
            root = %self.root.display(),
            "file secrets accept group- and world-readable files: development only"
        );
        self.options.allow_wide_permissions = true;
        self
    }

    /// Checks the root and builds the provider.
    pub fn build(self) -> Result<FileSecrets, FileSecretsError> {
        let root = canonical_root(&self.root)?;
        Ok(FileSecrets {
            shared: Arc::new(Shared {
                root,
                options: self.options,
                ttl: self.ttl,
                debounce: self.debounce,
                hasher: RandomState::new(),
                leases: Mutex::default(),
                subscribers: Mutex::default(),
                watch: Mutex::default(),
                closed: std::sync::atomic::AtomicBool::new(false),
            }),
        })
    }
}

fn canonical_root(root: &Path) -> Result<PathBuf, FileSecretsError> {
    let error = |source| FileSecretsError::Root {
        path: root.to_owned(),
        source,
    };
    let canonical = std::fs::canonicalize(root).map_err(|e| error(Some(e)))?;
    if !std::fs::metadata(&canonical)
        .map_err(|e| error(Some(e)))?
        .is_dir()
    {
        return Err(error(None));
    }
    Ok(canonical)
}

// === impl FileSecrets ===

impl FileSecrets {
    /// Starts configuring a provider reading secrets under `root`.
    pub fn builder(root: impl Into<PathBuf>) -> FileSecretsBuilder {
        FileSecretsBuilder {
            root: root.into(),
            options: ReadOptions {
                trim_trailing_newline: false,
                allow_wide_permissions: false,
                max_file_bytes: DEFAULT_MAX_FILE_BYTES,
            },
            ttl: None,
            debounce: DEFAULT_DEBOUNCE,
        }
    }

    /// A provider with the default settings for `root`.
    pub fn new(root: impl Into<PathBuf>) -> Result<Self, FileSecretsError> {
        Self::builder(root).build()
    }

    /// The canonical root directory.
    pub fn root(&self) -> &Path {
        &self.shared.root
    }
}

impl Shared {
    fn is_closed(&self) -> bool {
        self.closed.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Reads `name` on the blocking pool.
    pub(crate) async fn read(
        self: &Arc<Self>,
        name: &str,
    ) -> Result<zeroize::Zeroizing<Vec<u8>>, ProviderError> {
        let shared = self.clone();
        let owned = name.to_owned();
        tokio::task::spawn_blocking(move || read_secret(&shared.root, &owned, &shared.options))
            .await
            .map_err(|e| ProviderError::backend(format!("reading secret {name:?}"), e))?
            .map_err(ProviderError::from)
    }

    /// The lease ID of `name` holding `bytes`: the name and a keyed fingerprint of the
    /// content, so any change of content is a new lease.
    pub(crate) fn lease_id(&self, name: &str, bytes: &[u8]) -> String {
        format!("file:{name}#{:016x}", self.hasher.hash_one(bytes))
    }

    /// The leases handed out, to check after a change.
    pub(crate) fn leases(&self) -> Vec<(String, String)> {
        lock(&self.leases)
            .iter()
            .map(|(n, l)| (n.clone(), l.clone()))
            .collect()
    }

    /// Forgets `lease` for `name` unless a newer one was handed out meanwhile.
    pub(crate) fn forget(&self, name: &str, lease: &str) {
        let mut leases = lock(&self.leases);
        if leases.get(name).is_some_and(|l| l == lease) {
            leases.remove(name);
        }
    }
}

#[async_trait]
impl Secrets for FileSecrets {
    async fn get(&self, name: &str) -> Result<SecretValue, ProviderError> {
        let shared = &self.shared;
        if shared.is_closed() {
            return Err(ProviderError::Closed);
        }
        let mut bytes = shared.read(name).await?;
        let lease = shared.lease_id(name, &bytes);
        lock(&shared.leases).insert(name.to_owned(), lease.clone());
        // `take` moves the exact-size buffer out; the emptied `Zeroizing` is dropped.
        Ok(SecretValue::new(std::mem::take(&mut *bytes), shared.ttl).lease(lease))
    }

    /// Starts the filesystem watcher (once) and subscribes to its revocations.
    async fn watch_revocations(&self) -> Result<mpsc::Receiver<SecretRevocation>, ProviderError> {
        let shared = &self.shared;
        if shared.is_closed() {
            return Err(ProviderError::Closed);
        }
        let (tx, rx) = mpsc::channel(REVOCATION_CHANNEL);
        {
            let mut watch = lock(&shared.watch);
            if watch.is_none() {
                *watch = Some(Watch::start(shared)?);
            }
        }
        lock(&shared.subscribers).push(tx);
        Ok(rx)
    }

    async fn start(&self, _context: &ProviderContext) -> Result<(), ProviderError> {
        canonical_root(&self.shared.root)?;
        Ok(())
    }

    async fn close(&self) -> Result<(), ProviderError> {
        let shared = &self.shared;
        shared
            .closed
            .store(true, std::sync::atomic::Ordering::Release);
        if let Some(watch) = lock(&shared.watch).take() {
            watch.stop();
        }
        lock(&shared.subscribers).clear();
        Ok(())
    }
}

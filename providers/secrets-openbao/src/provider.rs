//! The provider: start (TLS, login), reads of KV v2 and leased secrets, and shutdown.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use http::Method;
use ligand_runtime::{ProviderContext, ProviderError, SecretRevocation, SecretValue, Secrets};
use secrecy::SecretString;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use zeroize::Zeroizing;

use crate::api::{self, KvV2Data, SecretResponse};
use crate::config::{Auth, OpenBaoBuilder, Settings};
use crate::error::OpenBaoError;
use crate::http::{Http, validate_path};
use crate::leases::Held;

/// Capacity of each revocation channel.
const REVOCATION_CHANNEL: usize = 64;

/// Secrets from OpenBao (or Vault) over its HTTP API. See the [crate docs](crate).
///
/// Cheap to clone; every clone is the same provider.
#[derive(Clone)]
pub struct OpenBaoSecrets {
    pub(crate) shared: Arc<Shared>,
}

pub(crate) struct Shared {
    pub(crate) settings: Settings,
    http: OnceLock<Http>,
    token: RwLock<Option<Arc<SecretString>>>,
    /// The lease held for each leased secret handed out.
    pub(crate) leases: Mutex<HashMap<String, Held>>,
    kv_versions: Mutex<HashMap<String, u64>>,
    pub(crate) subscribers: Mutex<Vec<mpsc::Sender<SecretRevocation>>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    poll_started: AtomicBool,
    closed: AtomicBool,
}

/// Locks a mutex whose data stays consistent even if a holder panicked (every critical
/// section here is a single insert, remove, swap or clone).
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl fmt::Debug for OpenBaoSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let settings = &self.shared.settings;
        f.debug_struct("OpenBaoSecrets")
            .field("address", &settings.address)
            .field("auth", &settings.auth)
            .field("kv_v2_mounts", &settings.kv_v2_mounts)
            .field("started", &self.shared.http.get().is_some())
            .finish_non_exhaustive()
    }
}

impl OpenBaoSecrets {
    /// Starts configuring a provider for the server at `address` (`https://host:port`), whose
    /// certificate chains to a CA in `ca_pem`.
    pub fn builder(address: &str, ca_pem: &[u8]) -> OpenBaoBuilder {
        OpenBaoBuilder::new(address, ca_pem)
    }

    pub(crate) fn from_settings(settings: Settings) -> Self {
        Self {
            shared: Arc::new(Shared {
                settings,
                http: OnceLock::new(),
                token: RwLock::new(None),
                leases: Mutex::default(),
                kv_versions: Mutex::default(),
                subscribers: Mutex::default(),
                tasks: Mutex::default(),
                poll_started: AtomicBool::new(false),
                closed: AtomicBool::new(false),
            }),
        }
    }

    /// The KV v2 version last read for `name`, if it was read as KV v2.
    pub fn kv_version(&self, name: &str) -> Option<u64> {
        lock(&self.shared.kv_versions).get(name).copied()
    }
}

// === impl Shared ===

impl Shared {
    pub(crate) fn http(&self) -> Result<&Http, OpenBaoError> {
        self.http.get().ok_or(OpenBaoError::NotStarted)
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    pub(crate) fn token(&self) -> Option<Arc<SecretString>> {
        self.token.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(crate) fn set_token(&self, token: SecretString) {
        *self.token.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(token));
    }

    pub(crate) fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        let mut tasks = lock(&self.tasks);
        tasks.retain(|t| !t.is_finished());
        tasks.push(tokio::spawn(task));
    }

    /// An unauthenticated call (logins).
    pub(crate) async fn call_anonymous(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Zeroizing<Vec<u8>>, OpenBaoError> {
        self.http()?.call(method, path, None, body).await
    }

    /// A call with the current token. With a login method (cert, JWT), a 403 may mean the
    /// token expired: log in again once and retry.
    pub(crate) async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Zeroizing<Vec<u8>>, OpenBaoError> {
        let http = self.http()?;
        let token = self.token();
        let result = http
            .call(method.clone(), path, token.as_deref(), body.clone())
            .await;
        match result {
            Err(OpenBaoError::PermissionDenied { .. })
                if matches!(self.settings.auth, Auth::Cert { .. } | Auth::Jwt { .. }) =>
            {
                tracing::debug!(path, "permission denied; logging in again once");
                let login = self.login().await?;
                self.set_token(login.token);
                http.call(method, path, self.token().as_deref(), body).await
            }
            other => other,
        }
    }

    fn kv_v2(&self, name: &str) -> bool {
        self.settings.kv_v2_mounts.iter().any(|mount| {
            name.strip_prefix(mount.as_str())
                .and_then(|rest| rest.strip_prefix("/data/"))
                .is_some_and(|path| !path.is_empty())
        })
    }

    async fn read_kv_v2(&self, name: &str) -> Result<SecretValue, OpenBaoError> {
        let body = self.call(Method::GET, name, None).await?;
        let response: SecretResponse<'_> = api::parse(name, &body)?;
        let envelope = response.data.ok_or_else(|| OpenBaoError::InvalidResponse {
            path: name.to_owned(),
            reason: "the response has no data".into(),
        })?;
        let kv: KvV2Data<'_> = api::parse(name, envelope.get().as_bytes())?;
        let mut bytes = api::object_bytes(name, kv.data)?;
        if let Some(metadata) = kv.metadata {
            tracing::debug!(
                secret = name,
                version = metadata.version,
                "read KV v2 secret"
            );
            lock(&self.kv_versions).insert(name.to_owned(), metadata.version);
        }
        Ok(SecretValue::new(
            std::mem::take(&mut *bytes),
            self.settings.kv_ttl,
        ))
    }

    /// A fresh read of a leased (dynamic) or KV v1 secret. A renewable lease keeps a copy of
    /// the value, so that renewing it can hand the same value back with the new TTL.
    pub(crate) async fn read_leased(&self, name: &str) -> Result<SecretValue, OpenBaoError> {
        let body = self.call(Method::GET, name, None).await?;
        let response: SecretResponse<'_> = api::parse(name, &body)?;
        let mut bytes = api::object_bytes(name, response.data)?;
        let duration = Duration::from_secs(response.lease_duration);
        let ttl = (!duration.is_zero()).then_some(duration);
        if response.lease_id.is_empty() {
            return Ok(SecretValue::new(std::mem::take(&mut *bytes), ttl));
        }
        let held = Held::new(
            &response.lease_id,
            duration,
            response.renewable,
            response.renewable.then(|| Zeroizing::new(bytes.to_vec())),
        );
        lock(&self.leases).insert(name.to_owned(), held);
        Ok(SecretValue::new(std::mem::take(&mut *bytes), ttl).lease(response.lease_id))
    }
}

// === impl Secrets for OpenBaoSecrets ===

#[async_trait]
impl Secrets for OpenBaoSecrets {
    async fn get(&self, name: &str) -> Result<SecretValue, ProviderError> {
        let shared = &self.shared;
        if shared.is_closed() {
            return Err(ProviderError::Closed);
        }
        validate_path(name)?;
        if shared.kv_v2(name) {
            return Ok(shared.read_kv_v2(name).await?);
        }
        if let Some(value) = shared.renew(name).await? {
            return Ok(value);
        }
        Ok(shared.read_leased(name).await?)
    }

    /// Starts the lease poll (once) and subscribes to its revocations.
    async fn watch_revocations(&self) -> Result<mpsc::Receiver<SecretRevocation>, ProviderError> {
        let shared = &self.shared;
        if shared.is_closed() {
            return Err(ProviderError::Closed);
        }
        let (tx, rx) = mpsc::channel(REVOCATION_CHANNEL);
        lock(&shared.subscribers).push(tx);
        if !shared.poll_started.swap(true, Ordering::AcqRel) {
            shared.spawn(crate::leases::poll(Arc::downgrade(shared)));
        }
        Ok(rx)
    }

    /// Builds the TLS client, logs in (a token is checked with `lookup-self`) and starts
    /// keeping the token alive. Any failure fails `init`.
    async fn start(&self, context: &ProviderContext) -> Result<(), ProviderError> {
        let shared = &self.shared;
        let dialer = crate::tls::dialer(&shared.settings, context)?;
        let http = Http::new(&shared.settings.address, dialer);
        if shared.http.set(http).is_err() {
            return Err(OpenBaoError::Config("the provider was started twice".into()).into());
        }
        let login = shared.login().await?;
        let (ttl, renewable) = (login.ttl, login.renewable);
        shared.set_token(login.token);
        if !ttl.is_zero() {
            shared.spawn(crate::auth::maintain(
                Arc::downgrade(shared),
                ttl,
                renewable,
            ));
        }
        Ok(())
    }

    async fn close(&self) -> Result<(), ProviderError> {
        let shared = &self.shared;
        shared.closed.store(true, Ordering::Release);
        for task in lock(&shared.tasks).drain(..) {
            task.abort();
        }
        lock(&shared.subscribers).clear();
        lock(&shared.leases).clear();
        *shared.token.write().unwrap_or_else(|e| e.into_inner()) = None;
        Ok(())
    }
}

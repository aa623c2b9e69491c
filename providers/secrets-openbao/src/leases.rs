//! Leases: renewal when the framework re-fetches a leased secret, and revocation detection by
//! polling `sys/leases/lookup`.
//!
//! **Renew, then re-read.** When the framework's cache asks again for a secret whose lease is
//! renewable and still valid, the provider renews the lease (`PUT sys/leases/renew` with the
//! original duration as increment) and hands back the value it kept, with the granted TTL:
//! the credentials stay the same, as OpenBao intends for dynamic secrets. It reads afresh
//! (new lease, new credentials) instead when the lease is not renewable, has expired, was
//! refused (400/404: revoked or unknown, which is also reported as a revocation), or when
//! OpenBao granted less than half the original duration, meaning the lease nears its
//! `max_ttl` and will soon be impossible to renew. A renewal that fails for any other reason
//! (OpenBao down, sealed) is an error: the framework keeps serving the cached value until its
//! TTL ends and retries.

use std::sync::{Arc, Weak};
use std::time::Duration;

use http::Method;
use ligand_runtime::{SecretRevocation, SecretValue};
use serde_json::json;
use tokio::time::Instant;
use zeroize::Zeroizing;

use crate::api::{self, RenewResponse};
use crate::error::OpenBaoError;
use crate::provider::{Shared, lock};

/// A lease handed out for one secret name.
pub(crate) struct Held {
    pub(crate) lease_id: String,
    /// The duration first granted: the increment asked for at renewal.
    duration: Duration,
    renewable: bool,
    expires_at: Instant,
    /// The value, kept for renewable leases only, so a renewal can hand it back.
    value: Option<Zeroizing<Vec<u8>>>,
}

impl Held {
    pub(crate) fn new(
        lease_id: &str,
        duration: Duration,
        renewable: bool,
        value: Option<Zeroizing<Vec<u8>>>,
    ) -> Self {
        Self {
            lease_id: lease_id.to_owned(),
            duration,
            renewable,
            expires_at: Instant::now() + duration,
            value,
        }
    }
}

impl Shared {
    /// Renews the lease held for `name` and returns its value with the new TTL; `None` when a
    /// fresh read is needed instead (see the module docs).
    pub(crate) async fn renew(&self, name: &str) -> Result<Option<SecretValue>, OpenBaoError> {
        let (lease_id, duration) = {
            let leases = lock(&self.leases);
            match leases.get(name) {
                Some(held)
                    if held.renewable
                        && held.value.is_some()
                        && held.expires_at > Instant::now() =>
                {
                    (held.lease_id.clone(), held.duration)
                }
                _ => return Ok(None),
            }
        };
        let path = "sys/leases/renew";
        let body = json!({ "lease_id": lease_id, "increment": duration.as_secs() });
        let answer = match self
            .call(Method::PUT, path, Some(body.to_string().into_bytes()))
            .await
        {
            Ok(answer) => answer,
            Err(error) if error.is_gone() => {
                tracing::info!(secret = name, "lease refused at renewal; reading afresh");
                self.revoked(name, &lease_id).await;
                return Ok(None);
            }
            Err(error) => return Err(error),
        };
        let renewed: RenewResponse = api::parse(path, &answer)?;
        let granted = Duration::from_secs(renewed.lease_duration);
        if (!renewed.lease_id.is_empty() && renewed.lease_id != lease_id)
            || granted.is_zero()
            || granted < duration / 2
        {
            tracing::debug!(secret = name, "lease near its maximum TTL; reading afresh");
            return Ok(None);
        }
        let mut leases = lock(&self.leases);
        let Some(held) = leases.get_mut(name).filter(|h| h.lease_id == lease_id) else {
            return Ok(None);
        };
        held.expires_at = Instant::now() + granted;
        held.renewable = renewed.renewable;
        let Some(value) = held.value.as_ref() else {
            return Ok(None);
        };
        Ok(Some(
            SecretValue::new(value.to_vec(), Some(granted)).lease(lease_id),
        ))
    }

    /// Forgets `lease_id` for `name` and tells every subscriber it was revoked.
    pub(crate) async fn revoked(&self, name: &str, lease_id: &str) {
        {
            let mut leases = lock(&self.leases);
            if leases.get(name).is_some_and(|h| h.lease_id == lease_id) {
                leases.remove(name);
            }
        }
        let subscribers: Vec<_> = {
            let mut subscribers = lock(&self.subscribers);
            subscribers.retain(|s| !s.is_closed());
            subscribers.clone()
        };
        for subscriber in subscribers {
            let revocation = SecretRevocation {
                lease_id: lease_id.to_owned(),
            };
            let _closed = subscriber.send(revocation).await;
        }
    }

    /// Looks up every unexpired lease held; those OpenBao no longer knows (400/404) are
    /// revoked. Other failures (OpenBao down) say nothing about the lease and are ignored.
    async fn check_leases(&self) {
        let now = Instant::now();
        let held: Vec<(String, String)> = {
            let mut leases = lock(&self.leases);
            leases.retain(|_, h| h.expires_at > now);
            leases
                .iter()
                .map(|(name, h)| (name.clone(), h.lease_id.clone()))
                .collect()
        };
        let path = "sys/leases/lookup";
        for (name, lease_id) in held {
            let body = json!({ "lease_id": lease_id }).to_string().into_bytes();
            match self.call(Method::PUT, path, Some(body)).await {
                Err(error) if error.is_gone() => {
                    tracing::info!(secret = %name, "lease revoked in OpenBao");
                    self.revoked(&name, &lease_id).await;
                }
                Err(error) => tracing::debug!(%error, "lease lookup failed"),
                Ok(_) => {}
            }
        }
    }
}

/// Polls the leases held at the configured interval until the provider is gone or closed.
pub(crate) async fn poll(shared: Weak<Shared>) {
    let Some(interval) = shared.upgrade().map(|s| s.settings.lease_poll_interval) else {
        return;
    };
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let Some(shared): Option<Arc<Shared>> = shared.upgrade() else {
            return;
        };
        if shared.is_closed() {
            return;
        }
        shared.check_leases().await;
    }
}

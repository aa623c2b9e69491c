//! The registry and registrar against a real `etcd` on loopback.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

#[path = "etcd/server.rs"]
mod server;

use std::future::Future;
use std::time::Duration;

use etcd_client::{Client, GetOptions, PutOptions};
use ligand_registry_etcd::{EtcdConfig, EtcdRegistrar, EtcdRegistry, instance_key, service_prefix};
use ligand_runtime::{
    Endpoint, ProviderError, Registration, RegistrationState, ServiceRegistrar, ServiceRegistry,
};
use tokio::sync::watch;

use self::server::{EtcdServer, free_port};

const FRAUD: &str = "spiffe://bank.example/service/fraud";
/// How long anything observed through etcd may take to show.
const DEADLINE: Duration = Duration::from_secs(20);

fn config(etcd: &EtcdServer) -> EtcdConfig {
    EtcdConfig::new([etcd.url()]).dial_timeout(Duration::from_secs(2))
}

fn registry(config: &EtcdConfig) -> EtcdRegistry {
    EtcdRegistry::from_config(config).expect("valid config")
}

fn registrar(config: &EtcdConfig) -> EtcdRegistrar {
    EtcdRegistrar::from_config(config).expect("valid config")
}

async fn raw(etcd: &EtcdServer) -> Client {
    Client::connect([etcd.url()], None).await.expect("connect")
}

fn addresses(endpoints: &[Endpoint]) -> Vec<&str> {
    let mut addresses: Vec<_> = endpoints.iter().map(|e| e.address.as_str()).collect();
    addresses.sort_unstable();
    addresses
}

/// Waits until the watched set satisfies `check`, failing the test after [`DEADLINE`].
async fn until(
    rx: &mut watch::Receiver<Vec<Endpoint>>,
    what: &str,
    check: impl FnMut(&Vec<Endpoint>) -> bool,
) -> Vec<Endpoint> {
    let waited = tokio::time::timeout(DEADLINE, rx.wait_for(check))
        .await
        .map(|found| found.map(|endpoints| endpoints.clone()));
    match waited {
        Ok(Ok(endpoints)) => endpoints,
        Ok(Err(_)) => panic!("{what}: the watch ended"),
        Err(_) => panic!("{what}: not within {DEADLINE:?}; last {:?}", *rx.borrow()),
    }
}

/// Polls `probe` until it holds, failing the test after [`DEADLINE`].
async fn eventually<F, Fut>(what: &str, mut probe: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !probe().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {DEADLINE:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn state_becomes(
    rx: &mut watch::Receiver<RegistrationState>,
    what: &str,
    check: impl FnMut(&RegistrationState) -> bool,
) {
    let waited = tokio::time::timeout(DEADLINE, rx.wait_for(check))
        .await
        .map(|found| found.map(drop));
    match waited {
        Ok(Ok(())) => {}
        Ok(Err(_)) => panic!("{what}: the registrar stopped reporting"),
        Err(_) => panic!("{what}: not within {DEADLINE:?}; last {:?}", *rx.borrow()),
    }
}

#[tokio::test]
async fn registered_instances_are_resolved_and_watched_through_their_lifecycle() {
    let etcd = EtcdServer::start();
    let config = config(&etcd);
    let registry = registry(&config);
    let first = registrar(&config);
    let second = registrar(&config);
    let a = Registration::new(FRAUD, "127.0.0.1:9001").with_metadata("zone", "a");
    let b = Registration::new(FRAUD, "127.0.0.1:9002");

    assert_eq!(registry.resolve(FRAUD).await.unwrap(), Vec::new());
    let mut rx = registry.watch(FRAUD).await.unwrap();
    assert!(rx.borrow_and_update().is_empty());

    first.register(&a).await.unwrap();
    assert_eq!(*first.state().borrow(), RegistrationState::Registered);
    assert_eq!(registry.resolve(FRAUD).await.unwrap(), vec![a.endpoint()]);
    until(&mut rx, "first instance added", |e| {
        *e == vec![a.endpoint()]
    })
    .await;

    second.register(&b).await.unwrap();
    until(&mut rx, "second instance added", |e| {
        addresses(e) == ["127.0.0.1:9001", "127.0.0.1:9002"]
    })
    .await;

    // Registering again replaces the entry (here: new metadata).
    let a2 = a.clone().with_metadata("zone", "b");
    first.register(&a2).await.unwrap();
    until(&mut rx, "first instance updated", |e| {
        e.contains(&a2.endpoint())
    })
    .await;

    // Unhealthy entries stay in etcd but are filtered out, by resolve and watch alike.
    second.set_unhealthy(&b).await.unwrap();
    until(&mut rx, "unhealthy instance filtered", |e| {
        *e == vec![a2.endpoint()]
    })
    .await;
    assert_eq!(registry.resolve(FRAUD).await.unwrap(), vec![a2.endpoint()]);
    let mut client = raw(&etcd).await;
    let stored = client
        .get(instance_key("/ligand", FRAUD, &b.address), None)
        .await
        .unwrap();
    assert_eq!(stored.kvs().len(), 1, "the unhealthy entry is kept");
    let lease = stored.kvs()[0].lease();
    assert_ne!(lease, 0, "entries live under a lease");

    // Deregistering deletes the entry and revokes its lease.
    second.deregister(&b).await.unwrap();
    assert_eq!(*second.state().borrow(), RegistrationState::Unregistered);
    let leases = client.leases().await.unwrap();
    assert!(
        leases.leases().iter().all(|l| l.id() != lease),
        "lease {lease} revoked"
    );
    first.deregister(&a2).await.unwrap();
    until(&mut rx, "all instances removed", Vec::is_empty).await;
    let left = client
        .get(
            service_prefix("/ligand", FRAUD),
            Some(GetOptions::new().with_prefix()),
        )
        .await
        .unwrap();
    assert!(left.kvs().is_empty());
}

#[tokio::test]
async fn a_dead_registrars_entry_expires_with_its_lease() {
    let etcd = EtcdServer::start();
    let config = config(&etcd).lease_ttl(Duration::from_secs(2));
    let registry = registry(&config);
    let mut rx = registry.watch(FRAUD).await.unwrap();
    let registrar = registrar(&config);
    let a = Registration::new(FRAUD, "127.0.0.1:9001");
    registrar.register(&a).await.unwrap();
    until(&mut rx, "registered", |e| e.len() == 1).await;
    // The process dies: nothing renews the lease and nothing deregisters.
    registrar.close().await.unwrap();
    drop(registrar);
    until(&mut rx, "expired", Vec::is_empty).await;
}

#[tokio::test]
async fn malformed_entries_are_skipped_and_the_watch_goes_on() {
    let etcd = EtcdServer::start();
    let config = config(&etcd);
    let registry = registry(&config);
    let mut rx = registry.watch(FRAUD).await.unwrap();
    let mut client = raw(&etcd).await;
    let key = |address: &str| instance_key("/ligand", FRAUD, address);
    client
        .put(key("127.0.0.1:1"), "not json", None)
        .await
        .unwrap();
    let other = r#"{"address":"127.0.0.1:2","spiffe_id":"spiffe://bank.example/service/other"}"#;
    client.put(key("127.0.0.1:2"), other, None).await.unwrap();
    let bad_address = r#"{"address":"nowhere","spiffe_id":"spiffe://bank.example/service/fraud"}"#;
    client.put(key("nowhere"), bad_address, None).await.unwrap();
    let good = r#"{"address":"127.0.0.1:4","spiffe_id":"spiffe://bank.example/service/fraud","metadata":{"zone":"a"}}"#;
    client
        .put(key("127.0.0.1:4"), good, Some(PutOptions::new()))
        .await
        .unwrap();
    let endpoints = until(&mut rx, "the valid entry", |e| !e.is_empty()).await;
    assert_eq!(addresses(&endpoints), ["127.0.0.1:4"]);
    assert_eq!(
        addresses(&registry.resolve(FRAUD).await.unwrap()),
        ["127.0.0.1:4"]
    );

    // A valid entry turning malformed disappears; the watch keeps following.
    client.put(key("127.0.0.1:4"), "{", None).await.unwrap();
    until(&mut rx, "the corrupted entry dropped", Vec::is_empty).await;
    client.put(key("127.0.0.1:4"), good, None).await.unwrap();
    until(&mut rx, "the entry back", |e| e.len() == 1).await;

    // A fresh watcher lists the same way.
    let fresh = EtcdRegistry::from_config(&config).unwrap();
    assert_eq!(
        addresses(&fresh.resolve(FRAUD).await.unwrap()),
        ["127.0.0.1:4"]
    );
}

#[tokio::test]
async fn etcd_down_keeps_endpoints_reports_lease_loss_and_recovers() {
    let mut etcd = EtcdServer::start();
    let config = config(&etcd)
        .lease_ttl(Duration::from_secs(2))
        .grace_period(Duration::from_secs(2))
        .dial_timeout(Duration::from_millis(500));
    let registry = registry(&config);
    let mut rx = registry.watch(FRAUD).await.unwrap();
    let registrar = registrar(&config);
    let mut state = registrar.state();
    let a = Registration::new(FRAUD, "127.0.0.1:9001");
    registrar.register(&a).await.unwrap();
    until(&mut rx, "registered", |e| *e == vec![a.endpoint()]).await;

    etcd.kill();
    state_becomes(&mut state, "lease lost", |s| {
        matches!(s, RegistrationState::Lost { .. })
    })
    .await;
    assert_eq!(
        *rx.borrow(),
        vec![a.endpoint()],
        "the watch keeps the last known endpoints while etcd is down"
    );
    assert!(
        registry.resolve(FRAUD).await.is_err(),
        "resolve fails closed"
    );

    etcd.restart();
    state_becomes(&mut state, "registered again", |s| {
        *s == RegistrationState::Registered
    })
    .await;
    eventually("resolvable again", || async {
        registry
            .resolve(FRAUD)
            .await
            .is_ok_and(|e| e == vec![a.endpoint()])
    })
    .await;

    // The watch resumed: a change made after the restart reaches it.
    let other = EtcdRegistrar::from_config(&config).unwrap();
    let b = Registration::new(FRAUD, "127.0.0.1:9002");
    other.register(&b).await.unwrap();
    until(&mut rx, "the watch resumed", |e| e.len() == 2).await;
    registrar.deregister(&a).await.unwrap();
    other.deregister(&b).await.unwrap();
    until(&mut rx, "both removed", Vec::is_empty).await;
}

#[tokio::test]
async fn an_unreachable_etcd_is_an_error() {
    let config = EtcdConfig::new([format!("http://127.0.0.1:{}", free_port())])
        .dial_timeout(Duration::from_millis(500));
    let registry = EtcdRegistry::from_config(&config).unwrap();
    assert!(matches!(
        registry.resolve(FRAUD).await,
        Err(ProviderError::Backend { .. })
    ));
    assert!(registry.watch(FRAUD).await.is_err());
    let registrar = EtcdRegistrar::from_config(&config).unwrap();
    let a = Registration::new(FRAUD, "127.0.0.1:9001");
    assert!(registrar.register(&a).await.is_err());
    assert_eq!(*registrar.state().borrow(), RegistrationState::Unregistered);
}

#[tokio::test]
async fn a_custom_prefix_separates_registries() {
    let etcd = EtcdServer::start();
    let blue = config(&etcd).prefix("/blue");
    let green = config(&etcd).prefix("/green");
    let registrar = registrar(&blue);
    let a = Registration::new(FRAUD, "127.0.0.1:9001");
    registrar.register(&a).await.unwrap();
    assert_eq!(registry(&blue).resolve(FRAUD).await.unwrap().len(), 1);
    assert!(registry(&green).resolve(FRAUD).await.unwrap().is_empty());
    let mut client = raw(&etcd).await;
    let stored = client
        .get(instance_key("/blue", FRAUD, "127.0.0.1:9001"), None)
        .await
        .unwrap();
    let value: serde_json::Value = serde_json::from_slice(stored.kvs()[0].value()).unwrap();
    assert_eq!(
        value,
        serde_json::json!({"address": "127.0.0.1:9001", "spiffe_id": FRAUD, "metadata": {}})
    );
}

/// A loopback TCP proxy in front of etcd that the test can cut: while cut, every connection
/// through it is dropped and new ones are closed at once, so the registry loses etcd while
/// the test still reaches it directly.
struct Cut {
    address: std::net::SocketAddr,
    open: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Cut {
    async fn start(upstream: std::net::SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (open, state) = watch::channel(true);
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                if !*state.borrow() {
                    continue; // dropped: closed at once
                }
                let mut state = state.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = state.wait_for(|open| !*open) => {}
                    }
                });
            }
        });
        Self {
            address,
            open,
            task,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    fn set_open(&self, open: bool) {
        self.open.send_replace(open);
    }
}

impl Drop for Cut {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test]
async fn a_watch_whose_resume_revision_was_compacted_re_lists_and_converges() {
    let etcd = EtcdServer::start();
    let upstream = etcd.url().trim_start_matches("http://").parse().unwrap();
    let cut = Cut::start(upstream).await;
    let registry = registry(&EtcdConfig::new([cut.url()]).dial_timeout(Duration::from_secs(1)));
    let direct = config(&etcd);
    let (first, second, third) = (registrar(&direct), registrar(&direct), registrar(&direct));
    let a = Registration::new(FRAUD, "127.0.0.1:9001");
    let b = Registration::new(FRAUD, "127.0.0.1:9002");
    first.register(&a).await.unwrap();
    second.register(&b).await.unwrap();
    let mut rx = registry.watch(FRAUD).await.unwrap();
    until(&mut rx, "both instances", |e| e.len() == 2).await;

    // Every set the watch publishes from now on.
    let mut seen = rx.clone();
    let published = tokio::spawn(async move {
        let mut sets = Vec::new();
        while seen.changed().await.is_ok() {
            let set = addresses(&seen.borrow_and_update())
                .into_iter()
                .map(str::to_owned)
                .collect::<Vec<_>>();
            let done = set == ["127.0.0.1:9002", "127.0.0.1:9003"];
            sets.push(set);
            if done {
                break;
            }
        }
        sets
    });

    // The registry loses etcd; meanwhile the set changes (a leaves, c joins) and etcd
    // compacts past the revision the watch would resume from.
    cut.set_open(false);
    let mut client = raw(&etcd).await;
    let c = Registration::new(FRAUD, "127.0.0.1:9003");
    third.register(&c).await.unwrap();
    first.deregister(&a).await.unwrap();
    let head = client
        .get(
            service_prefix("/ligand", FRAUD),
            Some(GetOptions::new().with_prefix()),
        )
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    client.compact(head, None).await.unwrap();
    assert_eq!(
        addresses(&rx.borrow()),
        ["127.0.0.1:9001", "127.0.0.1:9002"],
        "the last known set is kept while etcd is unreachable"
    );

    // Back: the watch cannot resume from its revision, so it re-lists.
    cut.set_open(true);
    until(&mut rx, "converged on the new set", |e| {
        addresses(e) == ["127.0.0.1:9002", "127.0.0.1:9003"]
    })
    .await;
    let sets = tokio::time::timeout(DEADLINE, published)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        sets,
        [["127.0.0.1:9002", "127.0.0.1:9003"]],
        "no empty or partial set in between"
    );
    second.deregister(&b).await.unwrap();
    third.deregister(&c).await.unwrap();
}

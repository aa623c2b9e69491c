//! The registrar's place in the lifecycle: registered once the binding listens, marked
//! unhealthy then deregistered at shutdown before the binding stops, lease loss in health.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod common;

use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use common::{Fixture, SERVER_ID};
use ligand_runtime::testkit::AllowList;
use ligand_runtime::{
    ProviderError, ProviderKind, Registration, RegistrationState, ServeError, ServiceRegistrar,
    ServiceRegistration, State,
};
use tokio::sync::watch;

/// Records every call, with whether the binding still accepted connections at that moment.
#[derive(Debug)]
struct RecordingRegistrar {
    log: Arc<Mutex<Vec<String>>>,
    registered: Mutex<Option<Registration>>,
    state: watch::Sender<RegistrationState>,
    fail: bool,
}

impl RecordingRegistrar {
    fn new(log: Arc<Mutex<Vec<String>>>) -> Self {
        Self {
            log,
            registered: Mutex::new(None),
            state: watch::Sender::new(RegistrationState::Unregistered),
            fail: false,
        }
    }

    fn record(&self, call: &str, registration: Option<&Registration>) {
        let listening = registration
            .and_then(|r| r.address.parse::<SocketAddr>().ok())
            .map(|addr| TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok());
        let entry = match listening {
            Some(true) => format!("{call} (binding accepting)"),
            Some(false) => format!("{call} (binding closed)"),
            None => call.to_owned(),
        };
        self.log.lock().unwrap().push(entry);
    }
}

#[async_trait]
impl ServiceRegistrar for RecordingRegistrar {
    async fn register(&self, registration: &Registration) -> Result<(), ProviderError> {
        self.record("register", None);
        if self.fail {
            return Err(ProviderError::Invalid("registry refused".into()));
        }
        *self.registered.lock().unwrap() = Some(registration.clone());
        self.state.send_replace(RegistrationState::Registered);
        Ok(())
    }

    async fn set_unhealthy(&self, registration: &Registration) -> Result<(), ProviderError> {
        self.record("unhealthy", Some(registration));
        Ok(())
    }

    async fn deregister(&self, registration: &Registration) -> Result<(), ProviderError> {
        self.record("deregister", Some(registration));
        Ok(())
    }

    fn state(&self) -> watch::Receiver<RegistrationState> {
        self.state.subscribe()
    }

    async fn close(&self) -> Result<(), ProviderError> {
        self.record("close", None);
        Ok(())
    }
}

fn allow_all() -> AllowList {
    AllowList::new().allow("*", "*", "*")
}

#[tokio::test]
async fn registers_once_listening_and_withdraws_before_the_binding_stops() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let registrar = Arc::new(RecordingRegistrar::new(log.clone()));
    let hook_log = log.clone();
    let mut f = Fixture::start(|c| {
        c.policy(allow_all())
            .registrar(
                registrar.clone(),
                ServiceRegistration::listening_address().metadata("zone", "a"),
            )
            .pre_stop(move || {
                let log = hook_log.clone();
                async move {
                    log.lock().unwrap().push("pre-stop".into());
                    Ok(())
                }
            })
    })
    .await;
    let mut health = registrar.state.subscribe();
    health
        .wait_for(|s| *s == RegistrationState::Registered)
        .await
        .unwrap();
    let registered = registrar.registered.lock().unwrap().clone().unwrap();
    assert_eq!(
        registered,
        Registration::new(SERVER_ID, f.addr.to_string()).with_metadata("zone", "a")
    );

    let Fixture {
        server, serving, ..
    } = &mut f;
    server.close().await;
    assert!(serving.await.unwrap().is_ok());
    assert_eq!(
        *log.lock().unwrap(),
        [
            "register",
            "pre-stop",
            "unhealthy (binding accepting)",
            "deregister (binding accepting)",
            "close",
        ]
    );
}

#[tokio::test]
async fn a_lost_registration_degrades_the_service_until_it_recovers() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let registrar = Arc::new(RecordingRegistrar::new(log));
    let f = Fixture::start(|c| {
        c.policy(allow_all()).registrar(
            registrar.clone(),
            ServiceRegistration::advertise("hello.example.org:8443"),
        )
    })
    .await;
    let monitor = f.server.monitor();
    let settled = |want: State| async move {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while monitor.provider(ProviderKind::ServiceRegistrar) != Some(want) {
            assert!(tokio::time::Instant::now() < deadline, "never {want}");
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    settled(State::Ready).await;
    assert_eq!(
        registrar
            .registered
            .lock()
            .unwrap()
            .as_ref()
            .unwrap()
            .address,
        "hello.example.org:8443"
    );
    assert_eq!(monitor.overall(), State::Ready);

    registrar.state.send_replace(RegistrationState::Lost {
        reason: "lease not renewed".into(),
    });
    settled(State::Degraded).await;
    assert_eq!(
        monitor.overall(),
        State::Degraded,
        "still serving, degraded"
    );

    registrar.state.send_replace(RegistrationState::Registered);
    settled(State::Ready).await;
    assert_eq!(monitor.overall(), State::Ready);
    f.server.close().await;
}

#[tokio::test]
async fn a_failed_registration_stops_serving() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let registrar = Arc::new(RecordingRegistrar {
        fail: true,
        ..RecordingRegistrar::new(log.clone())
    });
    let f = Fixture::start(|c| {
        c.policy(allow_all())
            .registrar(registrar.clone(), ServiceRegistration::listening_address())
    })
    .await;
    let result = f.serving.await.unwrap();
    assert!(
        matches!(result, Err(ServeError::Registration(_))),
        "{result:?}"
    );
    assert_eq!(
        f.server.monitor().provider(ProviderKind::ServiceRegistrar),
        Some(State::Unavailable)
    );
    assert!(
        TcpStream::connect_timeout(&f.addr, Duration::from_secs(1)).is_err(),
        "the listener is closed"
    );
    f.server.close().await;
    assert_eq!(*log.lock().unwrap(), ["register", "close"]);
}

#[tokio::test]
async fn an_unspecified_listening_address_is_not_published() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let registrar = Arc::new(RecordingRegistrar::new(log.clone()));
    let ca = ligand_runtime::testkit::TestCa::new(common::TRUST_DOMAIN);
    let identity = ligand_runtime::testkit::FakeIdentity::new(ca.context(ca.svid(SERVER_ID)));
    let config = ligand_runtime::Config::builder()
        .identity(identity)
        .policy(allow_all())
        .binding(ligand_runtime::HttpBinding::new("0.0.0.0:0"))
        .registrar(registrar, ServiceRegistration::listening_address())
        .build();
    let server = ligand_runtime::init(config).await.unwrap();
    let result = server
        .serve(common::Hello {
            calls: Arc::default(),
        })
        .await;
    assert!(
        matches!(&result, Err(ServeError::Registration(ProviderError::Invalid(m))) if m.contains("advertise")),
        "{result:?}"
    );
    assert!(log.lock().unwrap().is_empty(), "nothing was registered");
    server.close().await;
}

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, HeaderValue, Uri};
use proptest::prelude::*;
use serde_json::{Value, json};
use spiffe::SpiffeId;

use super::*;
use crate::testkit::{ManualClock, WitIssuer, WorkloadKey};

const PEER: &str = "spiffe://example.org/service/caller";
const AUD: &str = "https://accounts.example.org/accounts/42";
/// The tests' "now": 2026-01-01T00:00:00Z.
const NOW: u64 = 1_767_225_600;

struct Case {
    issuer: WitIssuer,
    key: WorkloadKey,
    clock: Arc<ManualClock>,
    verifier: WimseVerifier,
}

impl Case {
    fn new(configure: impl FnOnce(WimseConfig) -> WimseConfig) -> Self {
        let issuer = WitIssuer::new("wit-1");
        let clock = Arc::new(ManualClock::new(UNIX_EPOCH + Duration::from_secs(NOW)));
        let config = configure(issuer.config().require(true).clock(clock.clone()));
        Self {
            verifier: WimseVerifier::new(&config).unwrap(),
            issuer,
            key: WorkloadKey::new(),
            clock,
        }
    }

    fn wit_claims(&self) -> Value {
        let mut claims = self.issuer.claims(PEER, &self.key.jwk());
        claims["iat"] = json!(NOW);
        claims["exp"] = json!(NOW + 300);
        claims
    }

    fn wit(&self) -> String {
        self.issuer.sign(&self.wit_claims())
    }

    fn wpt_claims(&self, wit: &str) -> Value {
        self.key.claims(wit, AUD, self.clock.unix(), 30)
    }

    async fn verify(
        &self,
        headers: &[(&str, &str)],
    ) -> Result<Option<VerifiedWorkload>, WimseRejection> {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        let uri: Uri = AUD.parse().unwrap();
        self.verifier
            .verify(&map, &uri, &SpiffeId::new(PEER).unwrap())
            .await
    }

    async fn pair(&self, wit: &str, wpt: &str) -> Result<Option<VerifiedWorkload>, WimseRejection> {
        self.verify(&[(WIT_HEADER, wit), (WPT_HEADER, wpt)]).await
    }
}

#[tokio::test]
async fn a_valid_pair_names_the_workload() {
    let c = Case::new(|c| c);
    let wit = c.wit();
    let wpt = c.key.sign(&c.wpt_claims(&wit));
    let verified = c.pair(&wit, &wpt).await.unwrap().unwrap();
    assert_eq!(verified.subject.to_string(), PEER);
    assert_eq!(
        verified.issuer.as_deref(),
        Some(crate::testkit::TEST_WIT_ISSUER)
    );
}

#[tokio::test]
async fn each_check_has_its_own_rejection() {
    let c = Case::new(|c| c.leeway(Duration::ZERO));
    let wit = c.wit();
    let sign = |edit: &dyn Fn(&mut Value)| {
        let mut claims = c.wpt_claims(&wit);
        edit(&mut claims);
        c.key.sign(&claims)
    };
    let cases: Vec<(String, String, WimseRejection)> = vec![
        (
            wit.clone(),
            sign(&|w| w["aud"] = json!("https://accounts.example.org/other")),
            WimseRejection::WrongAudience,
        ),
        (
            wit.clone(),
            sign(&|w| w["exp"] = json!(NOW - 1)),
            WimseRejection::WptExpired,
        ),
        (
            wit.clone(),
            sign(&|w| w["exp"] = json!(NOW + 3600)),
            WimseRejection::WptLifetimeTooLong,
        ),
        (
            wit.clone(),
            sign(&|w| {
                w.as_object_mut().unwrap().remove("jti");
            }),
            WimseRejection::MissingClaim("jti"),
        ),
        (
            wit.clone(),
            sign(&|w| w["jti"] = json!("")),
            WimseRejection::InvalidClaim("jti"),
        ),
        (
            wit.clone(),
            sign(&|w| w["jti"] = json!("x".repeat(300))),
            WimseRejection::InvalidClaim("jti"),
        ),
        (
            wit.clone(),
            sign(&|w| {
                w.as_object_mut().unwrap().remove("wth");
            }),
            WimseRejection::MissingClaim("wth"),
        ),
        (
            wit.clone(),
            sign(&|w| w["wth"] = json!("AAAA")),
            WimseRejection::WitHashMismatch,
        ),
        (
            wit.clone(),
            sign(&|w| w["tth"] = json!("AAAA")),
            WimseRejection::TxnTokenHashMismatch,
        ),
        (
            wit.clone(),
            sign(&|w| w["ath"] = json!("AAAA")),
            WimseRejection::AccessTokenHashMismatch,
        ),
        (
            wit.clone(),
            sign(&|w| w["oth"] = json!({"x-other": "AAAA"})),
            WimseRejection::OtherTokenHashMismatch,
        ),
        (
            wit.clone(),
            sign(&|w| w["iat"] = json!(NOW + 100)),
            WimseRejection::NotYetValid,
        ),
        (
            wit.clone(),
            WorkloadKey::new().sign(&c.wpt_claims(&wit)),
            WimseRejection::BadWptSignature,
        ),
        (
            wit.clone(),
            c.key.sign_with_typ(Some("wit+jwt"), &c.wpt_claims(&wit)),
            WimseRejection::WrongWptType,
        ),
        (
            wit.clone(),
            c.key.sign_with_typ(None, &c.wpt_claims(&wit)),
            WimseRejection::WrongWptType,
        ),
        (wit.clone(), wit.clone(), WimseRejection::WrongWptType),
    ];
    for (wit, wpt, expected) in cases {
        assert_eq!(c.pair(&wit, &wpt).await.unwrap_err(), expected);
    }
}

#[tokio::test]
async fn wit_checks_have_their_own_rejections() {
    let c = Case::new(|c| c.leeway(Duration::ZERO));
    let with = |edit: &dyn Fn(&mut Value)| {
        let mut claims = c.wit_claims();
        edit(&mut claims);
        let wit = c.issuer.sign(&claims);
        let wpt = c.key.sign(&c.wpt_claims(&wit));
        (wit, wpt)
    };
    let cases: Vec<((String, String), WimseRejection)> = vec![
        (
            with(&|w| w["sub"] = json!("spiffe://example.org/service/other")),
            WimseRejection::PeerMismatch,
        ),
        (
            with(&|w| w["sub"] = json!("caller")),
            WimseRejection::BadSubject,
        ),
        (
            with(&|w| {
                w.as_object_mut().unwrap().remove("sub");
            }),
            WimseRejection::MissingClaim("sub"),
        ),
        (
            with(&|w| w["exp"] = json!(NOW - 1)),
            WimseRejection::WitExpired,
        ),
        (
            with(&|w| {
                w.as_object_mut().unwrap().remove("exp");
            }),
            WimseRejection::MissingClaim("exp"),
        ),
        (
            with(&|w| w["iss"] = json!("https://rogue.invalid")),
            WimseRejection::UntrustedIssuer,
        ),
        (
            with(&|w| {
                w.as_object_mut().unwrap().remove("cnf");
            }),
            WimseRejection::MissingClaim("cnf"),
        ),
        (
            with(&|w| w["cnf"] = json!({"jwk": {"kty": "oct", "k": "c2VjcmV0"}})),
            WimseRejection::BadConfirmationKey,
        ),
        (
            with(&|w| w["cnf"]["jwk"]["d"] = json!("AAAA")),
            WimseRejection::BadConfirmationKey,
        ),
        (
            with(&|w| w["cnf"] = json!("key")),
            WimseRejection::BadConfirmationKey,
        ),
    ];
    for ((wit, wpt), expected) in cases {
        assert_eq!(c.pair(&wit, &wpt).await.unwrap_err(), expected);
    }
    let claims = c.wit_claims();
    for typ in [
        Some("JWT"),
        Some("JOSE"),
        None,
        Some("txntoken+jwt"),
        Some("wpt+jwt"),
    ] {
        let wit = c.issuer.sign_with_typ(typ, &claims);
        let wpt = c.key.sign(&c.wpt_claims(&wit));
        assert_eq!(
            c.pair(&wit, &wpt).await.unwrap_err(),
            WimseRejection::WrongWitType,
            "{typ:?}"
        );
    }
    let rogue = WitIssuer::new("rogue");
    let wit = rogue.sign(&claims);
    let wpt = c.key.sign(&c.wpt_claims(&wit));
    assert_eq!(
        c.pair(&wit, &wpt).await.unwrap_err(),
        WimseRejection::UntrustedIssuer
    );
    let same_kid = WitIssuer::new("wit-1");
    let wit = same_kid.sign(&claims);
    let wpt = c.key.sign(&c.wpt_claims(&wit));
    assert_eq!(
        c.pair(&wit, &wpt).await.unwrap_err(),
        WimseRejection::BadWitSignature
    );
}

#[tokio::test]
async fn alg_none_is_a_disallowed_algorithm() {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let c = Case::new(|c| c);
    let unsigned = |typ: &str, claims: &Value| {
        let header = json!({"alg": "none", "typ": typ, "kid": "wit-1"});
        format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        )
    };
    let wit = unsigned("wit+jwt", &c.wit_claims());
    let wpt = c.key.sign(&c.wpt_claims(&wit));
    assert_eq!(
        c.pair(&wit, &wpt).await.unwrap_err(),
        WimseRejection::DisallowedAlgorithm
    );
    let wit = c.wit();
    let wpt = unsigned("wpt+jwt", &c.wpt_claims(&wit));
    assert_eq!(
        c.pair(&wit, &wpt).await.unwrap_err(),
        WimseRejection::DisallowedAlgorithm
    );
}

#[tokio::test]
async fn headers_bind_the_tokens_they_name() {
    let c = Case::new(|c| c);
    let wit = c.wit();
    let mut claims = c.wpt_claims(&wit);
    claims["tth"] = json!(crate::testkit::token_hash("txn-token-value"));
    claims["ath"] = json!(crate::testkit::token_hash("access"));
    claims["oth"] = json!({"x-other": crate::testkit::token_hash("other")});
    let wpt = c.key.sign(&claims);
    let headers = [
        (WIT_HEADER, wit.as_str()),
        (WPT_HEADER, wpt.as_str()),
        ("txn-token", "txn-token-value"),
        ("authorization", "Bearer access"),
        ("x-other", "other"),
    ];
    assert!(c.verify(&headers).await.unwrap().is_some());
    // Without the Transaction Token the `tth` binds nothing here.
    let mut claims = c.wpt_claims(&wit);
    claims["tth"] = json!(crate::testkit::token_hash("txn-token-value"));
    let wpt = c.key.sign(&claims);
    assert_eq!(
        c.pair(&wit, &wpt).await.unwrap_err(),
        WimseRejection::TxnTokenHashMismatch
    );
}

#[tokio::test]
async fn the_same_jti_from_another_workload_is_not_a_replay_but_from_the_same_is() {
    let cache = Arc::new(InMemoryReplayCache::new(10));
    let now = UNIX_EPOCH + Duration::from_secs(NOW);
    let exp = now + Duration::from_secs(30);
    let a = ReplayKey::new("spiffe://a", "1");
    let b = ReplayKey::new("spiffe://b", "1");
    assert_eq!(cache.record(a, exp, now).await.unwrap(), Recorded::Fresh);
    assert_eq!(cache.record(b, exp, now).await.unwrap(), Recorded::Fresh);
    assert_eq!(cache.record(a, exp, now).await.unwrap(), Recorded::Replay);
    // Expired entries are dropped as time passes, and the key is free again (its proof can
    // no longer pass the `exp` check anyway).
    let later = exp + Duration::from_secs(1);
    assert_eq!(
        cache
            .record(a, later + Duration::from_secs(30), later)
            .await
            .unwrap(),
        Recorded::Fresh
    );
    assert_eq!(cache.len(), 1);
}

#[tokio::test]
async fn a_full_cache_refuses_rather_than_evicts() {
    let cache = InMemoryReplayCache::new(2);
    let now = UNIX_EPOCH + Duration::from_secs(NOW);
    let exp = now + Duration::from_secs(30);
    for jti in ["1", "2"] {
        cache
            .record(ReplayKey::new("w", jti), exp, now)
            .await
            .unwrap();
    }
    assert!(matches!(
        cache.record(ReplayKey::new("w", "3"), exp, now).await,
        Err(ReplayCacheError::Full)
    ));
    // A replay is still recognised as one when full.
    assert_eq!(
        cache
            .record(ReplayKey::new("w", "1"), exp, now)
            .await
            .unwrap(),
        Recorded::Replay
    );
}

#[test]
fn a_lifetime_out_of_range_is_refused() {
    let issuer = WitIssuer::new("k");
    for lifetime in [Duration::ZERO, MAX_WPT_LIFETIME + Duration::from_secs(1)] {
        assert!(matches!(
            WimseVerifier::new(&issuer.config().max_wpt_lifetime(lifetime)),
            Err(WimseConfigError::Lifetime)
        ));
    }
}

#[test]
fn authorities_compare_lowercased_without_the_default_port() {
    assert_eq!(
        normalized_authority("Accounts.Example:443"),
        "accounts.example"
    );
    assert_eq!(normalized_authority("10.0.0.1:8443"), "10.0.0.1:8443");
    assert_eq!(access_token(b"Bearer  abc"), b"abc");
    assert_eq!(access_token(b"abc"), b"abc");
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_header_bytes_never_panic_and_always_deny(
        wit in proptest::collection::vec(any::<u8>(), 0..512),
        wpt in proptest::collection::vec(any::<u8>(), 0..512),
        require in any::<bool>(),
    ) {
        let c = Case::new(|c| c.require(require));
        let valid_wit = c.wit();
        let rt = runtime();
        let uri: Uri = AUD.parse().unwrap();
        let peer = SpiffeId::new(PEER).unwrap();
        for (wit, wpt) in [
            (HeaderValue::from_bytes(&wit).ok(), HeaderValue::from_bytes(&wpt).ok()),
            (HeaderValue::from_str(&valid_wit).ok(), HeaderValue::from_bytes(&wpt).ok()),
        ] {
            let mut headers = HeaderMap::new();
            let mut any = false;
            if let Some(wit) = wit {
                headers.insert(WIT_HEADER, wit);
                any = true;
            }
            if let Some(wpt) = wpt {
                headers.insert(WPT_HEADER, wpt);
                any = true;
            }
            let result = rt.block_on(c.verifier.verify(&headers, &uri, &peer));
            if any || require {
                prop_assert!(result.is_err());
            } else {
                prop_assert!(matches!(result, Ok(None)));
            }
        }
    }

    #[test]
    fn arbitrary_segments_never_panic_and_always_deny(
        header in proptest::collection::vec(any::<u8>(), 0..64),
        payload in proptest::collection::vec(any::<u8>(), 0..64),
        signature in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        use base64::Engine as _;
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let c = Case::new(|c| c);
        let wit = c.wit();
        let token = format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(&header),
            URL_SAFE_NO_PAD.encode(&payload),
            URL_SAFE_NO_PAD.encode(&signature),
        );
        let rt = runtime();
        prop_assert!(rt.block_on(c.pair(&wit, &token)).is_err());
        prop_assert!(rt.block_on(c.pair(&token, &token)).is_err());
    }
}

#[test]
fn the_clock_is_the_injected_one() {
    let clock = ManualClock::new(SystemTime::UNIX_EPOCH);
    clock.advance(Duration::from_secs(5));
    assert_eq!(clock.unix(), 5);
}

/// An identity source whose WITs live two seconds, counting its fetches.
#[derive(Debug, Default)]
struct ShortWits {
    fetches: std::sync::atomic::AtomicUsize,
    issuer: Option<WitIssuer>,
}

#[async_trait::async_trait]
impl crate::WorkloadIdentity for ShortWits {
    async fn fetch_x509_context(&self) -> Result<crate::X509Context, crate::ProviderError> {
        Err(crate::ProviderError::NotSupported)
    }

    async fn fetch_wit(
        &self,
        request: &crate::FetchWitRequest,
    ) -> Result<crate::FetchWitResponse, crate::ProviderError> {
        let Some(issuer) = &self.issuer else {
            return Err(crate::ProviderError::NotSupported);
        };
        self.fetches
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let mut response = issuer.fetch(PEER, request);
        response.expires_at = SystemTime::now() + Duration::from_secs(2);
        Ok(response)
    }
}

#[tokio::test(start_paused = true)]
async fn the_wit_is_cached_and_refreshed_with_a_new_key_before_it_expires() {
    let identity = Arc::new(ShortWits {
        issuer: Some(WitIssuer::new("wit-1")),
        ..ShortWits::default()
    });
    let stop = tokio_util::sync::CancellationToken::new();
    let signer = sign::WptSigner::start(identity.clone(), stop.clone())
        .await
        .unwrap()
        .unwrap();
    let fetches = || identity.fetches.load(std::sync::atomic::Ordering::SeqCst);
    let (wit, first) = signer.headers(AUD, None, SystemTime::now()).unwrap();
    let (same_wit, second) = signer.headers(AUD, None, SystemTime::now()).unwrap();
    assert_eq!(
        (wit.clone(), fetches()),
        (same_wit, 1),
        "signing fetches nothing"
    );
    assert_ne!(first, second, "a fresh WPT each time");
    // Paused time: the refresher's sleep (half the WIT's remaining life) elapses at once.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(fetches() >= 2, "refreshed at half-life");
    let (refreshed, _) = signer.headers(AUD, None, SystemTime::now()).unwrap();
    assert_ne!(refreshed, wit);
    let cnf = |wit: &HeaderValue| {
        let payload = wit.to_str().unwrap().split('.').nth(1).unwrap().to_owned();
        use base64::Engine as _;
        let json: Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(payload)
                .unwrap(),
        )
        .unwrap();
        json["cnf"]["jwk"].clone()
    };
    assert_ne!(cnf(&refreshed), cnf(&wit), "each WIT binds a new key");
    stop.cancel();
}

#[tokio::test]
async fn a_source_without_wits_turns_outbound_wimse_off() {
    let identity = Arc::new(ShortWits::default());
    let signer = sign::WptSigner::start(identity, tokio_util::sync::CancellationToken::new())
        .await
        .unwrap();
    assert!(signer.is_none());
}

#[tokio::test]
async fn outbound_proofs_verify_inbound() {
    /// An identity source issuing WITs from the verifier's trusted issuer.
    #[derive(Debug)]
    struct Source(WitIssuer);
    #[async_trait::async_trait]
    impl crate::WorkloadIdentity for Source {
        async fn fetch_x509_context(&self) -> Result<crate::X509Context, crate::ProviderError> {
            Err(crate::ProviderError::NotSupported)
        }
        async fn fetch_wit(
            &self,
            request: &crate::FetchWitRequest,
        ) -> Result<crate::FetchWitResponse, crate::ProviderError> {
            Ok(self.0.fetch(PEER, request))
        }
    }
    let issuer = WitIssuer::new("wit-1");
    let verifier = WimseVerifier::new(&issuer.config().require(true)).unwrap();
    let signer = sign::WptSigner::start(
        Arc::new(Source(issuer)),
        tokio_util::sync::CancellationToken::new(),
    )
    .await
    .unwrap()
    .unwrap();
    let txn = HeaderValue::from_static("txn-token-value");
    let tth = TokenHash::of(txn.as_bytes());
    let (wit, wpt) = signer.headers(AUD, Some(&tth), SystemTime::now()).unwrap();
    let mut headers = HeaderMap::new();
    headers.insert(WIT_HEADER, wit);
    headers.insert(WPT_HEADER, wpt);
    headers.insert("txn-token", txn);
    let verified = verifier
        .verify(
            &headers,
            &AUD.parse().unwrap(),
            &SpiffeId::new(PEER).unwrap(),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(verified.subject.to_string(), PEER);
}

#[tokio::test]
async fn the_in_memory_cache_meets_the_replay_cache_contract() {
    crate::testkit::conformance::replay_cache(&InMemoryReplayCache::default()).await;
}

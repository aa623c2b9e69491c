//! The scripted scenario: every step acts on the running bank over real mTLS and records
//! what was expected and what came back. A step that cannot run in this build says so
//! ("skipped") and never counts as passed.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http::Method;
use ligand::provider::{FetchWitRequest, TrustBundles, X509Context};
use ligand::testkit::{PeerClient, PeerResponse, WorkloadKey};
use ligand::{BoxError, SpiffeId};
use serde_json::{Value, json};

use crate::world::{API_AUDIENCE, Bank, DB_USER, IDP_ISSUER};
use crate::{ACCOUNTS, GATEWAY, TRANSFERS};

/// The development caller: one of the bank's people, calling the gateway.
pub const CALLER: &str = "spiffe://bank.example/user/dev";

/// The database user the secret-renewal step switches to.
pub const RENEWED_DB_USER: &str = "ledger-app-renewed";

/// How a step ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// What came back is what was expected.
    Passed,
    /// It is not.
    Failed,
    /// The step cannot run in this build (the reason says why); it proves nothing.
    Skipped(String),
}

/// One step of the scenario.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Step {
    /// Its short name, such as `rate-limit`.
    pub name: &'static str,
    /// What it shows, for people.
    pub title: &'static str,
    /// What should come back.
    pub expected: String,
    /// What came back.
    pub got: String,
    /// How it ended.
    pub outcome: Outcome,
    /// Values a test may check beyond the outcome (status codes, error codes, counts).
    pub detail: Value,
}

/// Every step, in order.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Report {
    /// The steps.
    pub steps: Vec<Step>,
}

impl Report {
    /// The step named `name`.
    pub fn step(&self, name: &str) -> Option<&Step> {
        self.steps.iter().find(|s| s.name == name)
    }

    /// Whether no step failed (skipped steps neither pass nor fail).
    pub fn ok(&self) -> bool {
        self.steps.iter().all(|s| s.outcome != Outcome::Failed)
    }

    /// The summary table: step | expected | got | outcome.
    pub fn table(&self) -> String {
        let rows: Vec<[String; 4]> = self
            .steps
            .iter()
            .map(|s| {
                let outcome = match &s.outcome {
                    Outcome::Passed => "passed".to_owned(),
                    Outcome::Failed => "FAILED".to_owned(),
                    Outcome::Skipped(reason) => format!("skipped ({reason})"),
                };
                [
                    s.title.to_owned(),
                    s.expected.clone(),
                    s.got.clone(),
                    outcome,
                ]
            })
            .collect();
        let header = ["step", "expected", "got", "outcome"].map(str::to_owned);
        let mut widths = header.clone().map(|h| h.chars().count());
        for row in &rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        let mut line = |cells: &[String; 4]| {
            let mut text = String::from("|");
            for (cell, width) in cells.iter().zip(widths) {
                let pad = width - cell.chars().count();
                let _ = write!(text, " {cell}{} |", " ".repeat(pad));
            }
            out.push_str(text.trim_end());
            out.push('\n');
        };
        line(&header);
        line(&widths.map(|w| "-".repeat(w)));
        for row in &rows {
            line(row);
        }
        out
    }
}

/// Runs every step against `bank`, printing progress lines when `progress` is set, then
/// shuts the bank down (the audit steps read the complete logs).
///
/// # Errors
/// Only when the scenario itself cannot act (its own identities); each step's failure is a
/// [`Outcome::Failed`] row, not an error.
pub async fn run(bank: &Bank, progress: bool) -> Result<Report, BoxError> {
    let driver = Driver::new(bank, progress).await?;
    let mut report = Report::default();
    let steps: [(&str, StepFn); 11] = [
        ("transfer", |d| Box::pin(d.transfer())),
        ("policy-denial", |d| Box::pin(d.policy_denial())),
        ("chain-shortcut", |d| Box::pin(d.chain_shortcut())),
        ("rate-limit", |d| Box::pin(d.rate_limit())),
        ("fraud-block", |d| Box::pin(d.fraud_block())),
        ("secret-read", |d| Box::pin(d.secret_read())),
        ("secret-renewal", |d| Box::pin(d.secret_renewal())),
        ("svid-rotation", |d| Box::pin(d.svid_rotation())),
        ("tampered-chain", |d| Box::pin(d.tampered_chain())),
        ("replayed-wpt", |d| Box::pin(d.replayed_wpt())),
        ("txn-token", |d| Box::pin(d.txn_token())),
    ];
    for (name, step) in steps {
        let step = match step(&driver).await {
            Ok(step) => step,
            Err(error) => Step {
                name,
                title: name,
                expected: "the step runs".to_owned(),
                got: format!("error: {error}"),
                outcome: Outcome::Failed,
                detail: Value::Null,
            },
        };
        driver.show(&step);
        report.steps.push(step);
    }
    driver.say("shutting the bank down (gateway first) to read the complete audit logs");
    bank.close().await;
    for step in [driver.audit_records(), driver.audit_verify()] {
        driver.show(&step);
        report.steps.push(step);
    }
    Ok(report)
}

type StepFn = for<'a> fn(
    &'a Driver<'a>,
) -> std::pin::Pin<Box<dyn Future<Output = Result<Step, BoxError>> + 'a>>;

/// The workloads and people the scenario acts as.
struct Driver<'a> {
    bank: &'a Bank,
    progress: bool,
    gateway: SocketAddr,
    accounts: SocketAddr,
    /// A customer's TLS client (no client certificate), calling the gateway with an access
    /// token of the demo identity provider.
    caller: PeerClient,
    /// The gateway's identity calling transfers directly, for the Transaction Token step.
    gateway_to_transfers: PeerClient,
    /// The gateway's and transfers' identities, for the raw requests to accounts.
    as_gateway: PeerClient,
    as_transfers: PeerClient,
}

fn step(
    name: &'static str,
    title: &'static str,
    expected: impl Into<String>,
    got: impl Into<String>,
    passed: bool,
    detail: Value,
) -> Step {
    Step {
        name,
        title,
        expected: expected.into(),
        got: got.into(),
        outcome: if passed {
            Outcome::Passed
        } else {
            Outcome::Failed
        },
        detail,
    }
}

/// `error_code` of a JSON body, or "".
fn code(response: &PeerResponse) -> String {
    field(response, "error_code")
}

fn field(response: &PeerResponse, name: &str) -> String {
    response
        .json()
        .ok()
        .and_then(|v| {
            v.get(name)
                .map(|f| f.as_str().map_or(f.to_string(), str::to_owned))
        })
        .unwrap_or_default()
}

/// The chain of a JSON body (`chain`: SPIFFE IDs) with the IDs shortened to service names.
fn chain_of(body: &Value) -> String {
    body.get("chain")
        .and_then(Value::as_array)
        .map(|hops| {
            hops.iter()
                .filter_map(Value::as_str)
                .map(|id| id.rsplit('/').next().unwrap_or(id))
                .collect::<Vec<_>>()
                .join(" → ")
        })
        .unwrap_or_default()
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl<'a> Driver<'a> {
    async fn new(bank: &'a Bank, progress: bool) -> Result<Self, BoxError> {
        let context = |id: &str| -> Result<X509Context, BoxError> {
            let issued = bank
                .ca
                .issue(&SpiffeId::new(id)?, Duration::from_secs(3600))?;
            Ok(X509Context {
                svids: vec![issued.svid],
                bundles: TrustBundles::new()
                    .with(bank.ca.trust_domain().clone(), vec![bank.ca.root().clone()]),
            })
        };
        let gateway_id = SpiffeId::new(GATEWAY)?;
        let accounts_id = SpiffeId::new(ACCOUNTS)?;
        Ok(Self {
            bank,
            progress,
            gateway: bank.gateway_addr(),
            accounts: bank.service("accounts").addr,
            // A customer's client: no certificate of its own, the gateway's SVID verified.
            caller: PeerClient::without_certificate(&context(CALLER)?, &gateway_id)?,
            gateway_to_transfers: PeerClient::new(
                &context(GATEWAY)?,
                Some(&SpiffeId::new(TRANSFERS)?),
            )?,
            as_gateway: PeerClient::new(&context(GATEWAY)?, Some(&accounts_id))?,
            as_transfers: PeerClient::new(&context(TRANSFERS)?, Some(&accounts_id))?,
        })
    }

    fn say(&self, line: &str) {
        if self.progress {
            println!("  {line}");
        }
    }

    fn show(&self, step: &Step) {
        if self.progress {
            let outcome = match &step.outcome {
                Outcome::Passed => "ok".to_owned(),
                Outcome::Failed => "FAILED".to_owned(),
                Outcome::Skipped(reason) => format!("skipped ({reason})"),
            };
            println!("- {}: {}\n    → {}\n", step.title, step.got, outcome);
        }
    }

    /// `Authorization: Bearer …` with an access token the demo identity provider signs for
    /// the customer `user`, valid for ten minutes.
    fn bearer(&self, user: &str) -> String {
        let token = self.bank.access_token(user, Duration::from_secs(600));
        format!("Bearer {token}")
    }

    /// `POST path` with a JSON body to the gateway, as the customer `user`.
    async fn post_gateway(
        &self,
        user: &str,
        path: &str,
        body: &Value,
    ) -> Result<PeerResponse, BoxError> {
        let bearer = self.bearer(user);
        self.caller
            .send(
                self.gateway,
                Method::POST,
                path,
                &[
                    ("content-type", "application/json"),
                    ("authorization", &bearer),
                ],
                serde_json::to_vec(body)?,
            )
            .await
    }

    /// `GET path` from the gateway, as the customer `user`.
    async fn get_gateway(&self, user: &str, path: &str) -> Result<PeerResponse, BoxError> {
        let bearer = self.bearer(user);
        self.caller
            .send(
                self.gateway,
                Method::GET,
                path,
                &[("authorization", &bearer)],
                Vec::new(),
            )
            .await
    }

    async fn balance(&self, account: &str) -> Result<(PeerResponse, Value), BoxError> {
        let response = self
            .get_gateway(account, &format!("/v1/accounts/{account}"))
            .await?;
        let body = response.json().unwrap_or(Value::Null);
        Ok((response, body))
    }

    async fn transfer(&self) -> Result<Step, BoxError> {
        self.say("POST /v1/transfers alice → bob 125, as alice (her access token from the identity provider)");
        let response = self
            .post_gateway(
                "alice",
                "/v1/transfers",
                &json!({"from": "alice", "to": "bob", "amount": 125}),
            )
            .await?;
        let body = response.json().unwrap_or(Value::Null);
        let chain = chain_of(&body);
        let passed = response.status == 200
            && body["from_balance"] == 10_000 - 125
            && body["fraud_score"].as_u64().is_some_and(|s| s < 80)
            && chain == "gateway → transfers → accounts";
        Ok(step(
            "transfer",
            "allowed transfer",
            "200, alice debited, chain gateway → transfers → accounts",
            format!(
                "{}, alice {} left, fraud score {}, chain {chain}",
                response.status, body["from_balance"], body["fraud_score"]
            ),
            passed,
            json!({"status": response.status, "body": body}),
        ))
    }

    async fn policy_denial(&self) -> Result<Step, BoxError> {
        self.say("POST /v1/transfers eve → bob 10 (eve is frozen in accounts' policy data)");
        let response = self
            .post_gateway(
                "eve",
                "/v1/transfers",
                &json!({"from": "eve", "to": "bob", "amount": 10}),
            )
            .await?;
        let body = response.json().unwrap_or(Value::Null);
        let (downstream_code, request_id) = (
            body["downstream_error_code"].as_str().unwrap_or(""),
            body["downstream_request_id"].as_str().unwrap_or(""),
        );
        let chain = chain_of(&body);
        let passed = response.status == 424
            && body["refused_by"] == ACCOUNTS
            && downstream_code == "POLICY_DENIED"
            && !request_id.is_empty()
            && chain == "gateway → transfers → accounts";
        Ok(step(
            "policy-denial",
            "policy denial deep in the chain",
            "accounts refuses: POLICY_DENIED with its request_id, chain shown",
            format!(
                "{} from {}: {downstream_code} (request {request_id}), chain {chain}",
                response.status,
                body["refused_by"]
                    .as_str()
                    .and_then(|id| id.rsplit('/').next())
                    .unwrap_or("?"),
            ),
            passed,
            json!({"status": response.status, "body": body}),
        ))
    }

    async fn chain_shortcut(&self) -> Result<Step, BoxError> {
        self.say("POST /v1/shortcut/alice/debit: the gateway debits accounts itself");
        let response = self
            .post_gateway("alice", "/v1/shortcut/alice/debit", &json!({"amount": 1}))
            .await?;
        let body = response.json().unwrap_or(Value::Null);
        let downstream_code = body["downstream_error_code"].as_str().unwrap_or("");
        let chain = chain_of(&body);
        let passed = response.status == 424
            && downstream_code == "POLICY_DENIED"
            // The gateway's view: the customer (the token's `sub`), then itself, then accounts.
            && chain == "alice → gateway → accounts";
        Ok(step(
            "chain-shortcut",
            "debit skipping transfers",
            "accounts refuses: POLICY_DENIED (chain alice → gateway → accounts)",
            format!(
                "{} from accounts: {downstream_code} (request {}), chain {chain}",
                response.status,
                body["downstream_request_id"].as_str().unwrap_or("")
            ),
            passed,
            json!({"status": response.status, "body": body}),
        ))
    }

    async fn rate_limit(&self) -> Result<Step, BoxError> {
        self.say("GET /v1/rates four times (3 at once allowed per customer, then 1 per 5 s)");
        let mut statuses = Vec::new();
        let mut retry_after = String::new();
        let mut last_code = String::new();
        for _ in 0..4 {
            let response = self.get_gateway("alice", "/v1/rates").await?;
            statuses.push(response.status);
            if response.status == 429 {
                retry_after = response
                    .headers
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_owned();
                last_code = code(&response);
            }
        }
        let passed = statuses == [200, 200, 200, 429]
            && !retry_after.is_empty()
            && last_code == "RATE_LIMITED";
        Ok(step(
            "rate-limit",
            "rate limit",
            "200 200 200, then 429 RATE_LIMITED with Retry-After",
            format!("{statuses:?}, {last_code}, Retry-After: {retry_after}"),
            passed,
            json!({"statuses": statuses, "retry_after": retry_after, "code": last_code}),
        ))
    }

    async fn fraud_block(&self) -> Result<Step, BoxError> {
        self.say("POST /v1/transfers alice → mallory 50 (mallory is a flagged recipient)");
        let (_, before) = self.balance("alice").await?;
        let response = self
            .post_gateway(
                "alice",
                "/v1/transfers",
                &json!({"from": "alice", "to": "mallory", "amount": 50}),
            )
            .await?;
        let body = response.json().unwrap_or(Value::Null);
        let (_, after) = self.balance("alice").await?;
        let unchanged = before["balance"].is_i64() && before["balance"] == after["balance"];
        let passed = response.status == 422 && body["error_code"] == "FRAUD_BLOCKED" && unchanged;
        Ok(step(
            "fraud-block",
            "fraud block",
            "422 FRAUD_BLOCKED (a business answer), alice's balance unchanged",
            format!(
                "{} {} (score {}), alice {} → {}",
                response.status,
                body["error_code"].as_str().unwrap_or(""),
                body["score"],
                before["balance"],
                after["balance"]
            ),
            passed,
            json!({"status": response.status, "body": body, "unchanged": unchanged}),
        ))
    }

    async fn secret_read(&self) -> Result<Step, BoxError> {
        self.say("GET /v1/accounts/alice: accounts reads its DB credentials (#[ligand::secret])");
        let (response, body) = self.balance("alice").await?;
        let user = body["db_user"].as_str().unwrap_or("").to_owned();
        Ok(step(
            "secret-read",
            "secret read",
            format!("accounts answers as DB user {DB_USER}"),
            format!("{}, DB user {user}", response.status),
            response.status == 200 && user == DB_USER,
            json!({"status": response.status, "db_user": user}),
        ))
    }

    async fn secret_renewal(&self) -> Result<Step, BoxError> {
        self.say(&format!(
            "rewriting {}/{} with user {RENEWED_DB_USER}",
            self.bank.secrets_dir.display(),
            crate::DB_SECRET
        ));
        self.bank
            .rotate_db_secret(RENEWED_DB_USER, "a brand new passphrase")?;
        // The provider's watch sees the change (debounced) and revokes the cached value; the
        // next read fetches the new one. Poll for it, within a bound.
        let started = Instant::now();
        let mut reads = 0;
        let mut user = String::new();
        while started.elapsed() < Duration::from_secs(15) {
            reads += 1;
            let (_, body) = self.balance("alice").await?;
            user = body["db_user"].as_str().unwrap_or("").to_owned();
            if user == RENEWED_DB_USER {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(step(
            "secret-renewal",
            "secret renewal",
            format!("after the file changes, DB user {RENEWED_DB_USER}"),
            format!(
                "DB user {user} after {reads} reads ({} ms)",
                started.elapsed().as_millis()
            ),
            user == RENEWED_DB_USER,
            json!({"db_user": user, "reads": reads}),
        ))
    }

    async fn svid_rotation(&self) -> Result<Step, BoxError> {
        self.say("transfers of 1 from alice to bob, back to back, while every SVID rotates");
        let started = Instant::now();
        // The services rotate at half their SVID lifetime: run until the gateway has shown
        // three certificates (two rotations), within a bound.
        let bound = Duration::from_secs(30);
        let mut certificates: Vec<Vec<u8>> = Vec::new();
        let (mut calls, mut failures) = (0u32, 0u32);
        let mut first_failure = String::new();
        let body = serde_json::to_vec(&json!({"from": "alice", "to": "bob", "amount": 1}))?;
        let bearer = self.bearer("alice");
        while certificates.len() < 3 && started.elapsed() < bound {
            let mut connection = self.caller.connect(self.gateway).await?;
            let certificate = connection.server_certificate().to_vec();
            if certificates.last() != Some(&certificate) {
                certificates.push(certificate);
            }
            calls += 1;
            let response = connection
                .send(
                    Method::POST,
                    "/v1/transfers",
                    &[
                        ("content-type", "application/json"),
                        ("authorization", &bearer),
                    ],
                    body.clone(),
                )
                .await;
            match response {
                Ok(r) if r.status == 200 => {}
                Ok(r) => {
                    failures += 1;
                    if first_failure.is_empty() {
                        first_failure = format!("{} {}", r.status, r.text());
                    }
                }
                Err(error) => {
                    failures += 1;
                    if first_failure.is_empty() {
                        first_failure = error.to_string();
                    }
                }
            }
        }
        let rotations = certificates.len().saturating_sub(1);
        let mut got = format!(
            "{calls} calls in {:.1} s, {rotations} rotations seen, {failures} failed",
            started.elapsed().as_secs_f64()
        );
        if !first_failure.is_empty() {
            let _ = write!(got, " (first: {first_failure})");
        }
        Ok(step(
            "svid-rotation",
            "SVID rotation mid-run",
            "SVIDs rotate during the burst, 0 failed calls",
            got,
            rotations >= 2 && failures == 0,
            json!({"calls": calls, "failures": failures, "rotations": rotations}),
        ))
    }

    /// A WIT for transfers binding a fresh proof key, and a WPT for `path` on accounts.
    fn wimse_pair(&self, key: &WorkloadKey, path: &str) -> Result<(String, String), BoxError> {
        let request = FetchWitRequest {
            audience: String::new(),
            cnf_jwk: key.jwk().to_string(),
        };
        let wit = self
            .bank
            .transfers_jwt
            .issue_wit(
                &SpiffeId::new(TRANSFERS)?,
                &request,
                Duration::from_secs(300),
            )?
            .token;
        // The raw client sends `Host: ligand.invalid`: the target URI accounts sees.
        let aud = format!("https://ligand.invalid{path}");
        let wpt = key.sign(&key.claims(&wit, &aud, unix_now(), 60));
        Ok((wit, wpt))
    }

    async fn tampered_chain(&self) -> Result<Step, BoxError> {
        self.say("as transfers, GET accounts' /accounts/alice with a chain whose gateway link was altered");
        let accounts = SpiffeId::new(ACCOUNTS)?;
        let header = self
            .as_transfers
            .chain_header(&[&self.as_gateway], &accounts)?;
        // One byte in the middle of the gateway token's signature (its compact JWS ends at the
        // certificate attached to it, or at the comma).
        let end = header
            .find([ligand::ATTACHMENT_SEPARATOR, ','])
            .ok_or("a two-token chain")?;
        let at = end - 20;
        let mut bytes = header.into_bytes();
        bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(bytes)?;
        let key = WorkloadKey::new();
        let path = "/accounts/alice";
        let (wit, wpt) = self.wimse_pair(&key, path)?;
        let response = self
            .as_transfers
            .send(
                self.accounts,
                Method::GET,
                path,
                &[
                    (ligand::CHAIN_HEADER, &tampered),
                    (ligand::WIT_HEADER, &wit),
                    (ligand::WPT_HEADER, &wpt),
                ],
                Vec::new(),
            )
            .await?;
        let code = code(&response);
        Ok(step(
            "tampered-chain",
            "tampered chain",
            "400 CHAIN_*",
            format!("{} {code}", response.status),
            response.status == 400 && code.starts_with("CHAIN_"),
            json!({"status": response.status, "code": code}),
        ))
    }

    async fn replayed_wpt(&self) -> Result<Step, BoxError> {
        self.say("as transfers, GET accounts' /accounts/alice twice with the same WIT and WPT");
        let key = WorkloadKey::new();
        let path = "/accounts/alice";
        let (wit, wpt) = self.wimse_pair(&key, path)?;
        let headers = [
            (ligand::WIT_HEADER, wit.as_str()),
            (ligand::WPT_HEADER, &wpt),
        ];
        let first = self
            .as_transfers
            .send(self.accounts, Method::GET, path, &headers, Vec::new())
            .await?;
        let replay = self
            .as_transfers
            .send(self.accounts, Method::GET, path, &headers, Vec::new())
            .await?;
        let code = code(&replay);
        Ok(step(
            "replayed-wpt",
            "replayed WPT",
            "first use 200, the replay 401 WIMSE_INVALID",
            format!("{}, then {} {code}", first.status, replay.status),
            first.status == 200 && replay.status == 401 && code == "WIMSE_INVALID",
            json!({"first": first.status, "replay": replay.status, "code": code}),
        ))
    }

    /// The audit trail as it stands: the JSON audit logs' records.
    fn audit_records(&self) -> Step {
        let mut counts = Vec::new();
        let mut total = 0usize;
        let mut unreadable = Vec::new();
        for service in &self.bank.services {
            let path = self.bank.audit_dir.join(format!("{}.jsonl", service.name));
            match std::fs::read_to_string(&path) {
                Ok(text) => {
                    let records = text
                        .lines()
                        .filter(|l| serde_json::from_str::<Value>(l).is_ok())
                        .count();
                    let lines = text.lines().count();
                    if records != lines {
                        unreadable.push(format!(
                            "{}: {} lines not JSON",
                            service.name,
                            lines - records
                        ));
                    }
                    total += records;
                    counts.push(format!("{} {records}", service.name));
                }
                Err(error) => unreadable.push(format!("{}: {error}", service.name)),
            }
        }
        let mut got = format!("{total} records ({})", counts.join(", "));
        if !unreadable.is_empty() {
            let _ = write!(got, "; {}", unreadable.join("; "));
        }
        step(
            "audit-trail",
            "audit trail written",
            "every service's JSON audit log readable, records > 0",
            got,
            total > 0 && unreadable.is_empty() && counts.len() == 4,
            json!({"records": total}),
        )
    }

    /// Every service's decision log verified as `ligand audit verify` does (the same
    /// verifier): the hash chain intact, every checkpoint signed by that service's SVID under
    /// the development CA, sealed by the final checkpoint of the clean shutdown; and a copy of
    /// accounts' log with one verdict flipped refused at that line.
    fn audit_verify(&self) -> Step {
        use ligand::audit::{Broken, VerifyError, VerifyOptions, verify, verify_file};

        let bundles = TrustBundles::new().with(
            self.bank.ca.trust_domain().clone(),
            vec![self.bank.ca.root().clone()],
        );
        let options = VerifyOptions::default();
        let mut verified = Vec::new();
        let mut failures = Vec::new();
        let (mut records, mut checkpoints) = (0, 0);
        for service in &self.bank.services {
            let path = self.bank.audit_dir.join(format!("{}.jsonl", service.name));
            let id = SpiffeId::new(service.id).map_err(|e| e.to_string());
            match id.and_then(|id| {
                verify_file(&path, &bundles, &id, &options).map_err(|e| e.to_string())
            }) {
                Ok(report) => {
                    records += report.records;
                    checkpoints += report.checkpoints;
                    verified.push(service.name);
                }
                Err(error) => failures.push(format!("{}: {error}", service.name)),
            }
        }
        let accounts = self.bank.audit_dir.join("accounts.jsonl");
        let tampered = std::fs::read_to_string(&accounts).ok().and_then(|text| {
            let mut lines: Vec<&str> = text.lines().collect();
            let at = lines.iter().position(|l| l.contains("\"allowed\":false"))?;
            let flipped = lines[at].replace("\"allowed\":false", "\"allowed\":true");
            lines[at] = &flipped;
            let copy: String = lines.iter().map(|l| format!("{l}\n")).collect();
            let id = SpiffeId::new(ACCOUNTS).ok()?;
            Some((at + 1, verify(copy.as_bytes(), &bundles, &id, &options)))
        });
        let tamper_caught = matches!(
            &tampered,
            Some((line, Err(VerifyError::Broken { line: at, broken: Broken::Edited })))
                if *at == *line as u64
        );
        let mut got = format!(
            "{} of 4 logs verified ({records} records, {checkpoints} signed checkpoints)",
            verified.len()
        );
        match &tampered {
            Some((line, Err(error))) => {
                let _ = write!(got, "; flipped denial at line {line}: {error}");
            }
            Some((line, Ok(_))) => {
                let _ = write!(got, "; flipped denial at line {line} NOT detected");
            }
            None => got.push_str("; no denial in accounts' log to flip"),
        }
        if !failures.is_empty() {
            let _ = write!(got, "; {}", failures.join("; "));
        }
        step(
            "audit-verify",
            "decision log verified",
            "each log's chain and signed checkpoints verify; a flipped denial is refused at its line",
            got,
            failures.is_empty() && verified.len() == 4 && tamper_caught,
            json!({
                "records": records,
                "checkpoints": checkpoints,
                "command": format!(
                    "ligand audit verify --service {ACCOUNTS} --bundle {} {}",
                    self.bank.audit_dir.join("bundle.pem").display(),
                    accounts.display()
                ),
            }),
        )
    }

    /// The trust boundary: the gateway takes only its identity provider's access tokens, and
    /// transfers only calls that carry a Transaction Token the gateway minted.
    async fn txn_token(&self) -> Result<Step, BoxError> {
        self.say("GET /v1/accounts/alice without a token, then with one from another issuer");
        let missing = self.caller.get(self.gateway, "/v1/accounts/alice").await?;
        let forger = ligand::testkit::TxnIssuer::new("bank-idp-1");
        let now = unix_now();
        let forged = forger.sign_access_token(&json!({
            "iss": IDP_ISSUER, "aud": API_AUDIENCE, "sub": "alice",
            "iat": now, "exp": now + 600,
        }));
        let forged = self
            .caller
            .send(
                self.gateway,
                Method::GET,
                "/v1/accounts/alice",
                &[("authorization", &format!("Bearer {forged}"))],
                Vec::new(),
            )
            .await?;
        self.say("as the gateway, POST transfers' /transfers without a Transaction Token, then with one the gateway did not sign");
        let transfer = serde_json::to_vec(&json!({"from": "alice", "to": "bob", "amount": 1}))?;
        let unminted = self
            .gateway_to_transfers
            .send(
                self.bank.service("transfers").addr,
                Method::POST,
                "/transfers",
                &[("content-type", "application/json")],
                transfer.clone(),
            )
            .await?;
        let foreign = forger.token(crate::TRUST_DOMAIN, "alice");
        let foreign = self
            .gateway_to_transfers
            .send(
                self.bank.service("transfers").addr,
                Method::POST,
                "/transfers",
                &[
                    ("content-type", "application/json"),
                    (ligand::TXN_TOKEN_HEADER, &foreign),
                ],
                transfer,
            )
            .await?;
        let got = [&missing, &forged, &unminted, &foreign]
            .iter()
            .map(|r| format!("{} {}", r.status, code(r)))
            .collect::<Vec<_>>();
        let expected = [
            (401, "ACCESS_TOKEN_MISSING"),
            (401, "INVALID_TOKEN"),
            (401, "TXN_TOKEN_MISSING"),
            (401, "TXN_TOKEN_INVALID"),
        ];
        let passed = [&missing, &forged, &unminted, &foreign]
            .iter()
            .zip(expected)
            .all(|(r, (status, c))| r.status == status && code(r) == c);
        Ok(step(
            "txn-token",
            "trust boundary: access and Transaction Tokens",
            "gateway: 401 ACCESS_TOKEN_MISSING, 401 INVALID_TOKEN; transfers: 401 TXN_TOKEN_MISSING, 401 TXN_TOKEN_INVALID",
            got.join(", "),
            passed,
            json!({"statuses": got}),
        ))
    }
}

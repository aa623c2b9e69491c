//! The bank scenario in-process: four services over real mTLS on loopback, every step's
//! outcome asserted, not only that it ran.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::time::Duration;

use bank::scenario::{self, Outcome, Report};
use bank::world::{Bank, DB_USER, Options};

fn passed<'a>(report: &'a Report, name: &str) -> &'a serde_json::Value {
    let step = report
        .step(name)
        .unwrap_or_else(|| panic!("no step {name}"));
    assert_eq!(
        step.outcome,
        Outcome::Passed,
        "{name}: expected {}, got {}",
        step.expected,
        step.got
    );
    &step.detail
}

/// accounts' audit record of the decision `request_id` (the logs are complete once the
/// scenario has shut the bank down).
fn denial_record(bank: &Bank, request_id: &str) -> serde_json::Value {
    let log = std::fs::read_to_string(bank.audit_dir.join("accounts.jsonl")).unwrap();
    log.lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .find(|record| record["type"] == "decision" && record["request_id"] == request_id)
        .unwrap_or_else(|| panic!("no decision {request_id} in accounts' audit log"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_step_of_the_scenario_has_the_outcome_it_claims() {
    let dir = tempfile::tempdir().unwrap();
    // SVIDs of 4 s rotate every 2 s: the rotation step sees two rotations.
    let options = Options::under(dir.path(), Duration::from_secs(4));
    let bank = Bank::start(&options).await.unwrap();
    let report = scenario::run(&bank, false).await.unwrap();
    println!("{}", report.table());

    let transfer = passed(&report, "transfer");
    assert_eq!(transfer["status"], 200);
    assert_eq!(transfer["body"]["from_balance"], 10_000 - 125);
    assert_eq!(
        transfer["body"]["chain"],
        serde_json::json!([bank::GATEWAY, bank::TRANSFERS, bank::ACCOUNTS])
    );

    // Denied by accounts' policy three hops down; the caller sees who, why and the request ID.
    let denial = passed(&report, "policy-denial");
    assert_eq!(denial["status"], 424);
    assert_eq!(denial["body"]["refused_by"], bank::ACCOUNTS);
    assert_eq!(denial["body"]["downstream_error_code"], "POLICY_DENIED");
    assert_eq!(
        denial["body"]["downstream_request_id"]
            .as_str()
            .unwrap()
            .len(),
        32
    );
    // The request ID the caller got is accounts' audit record of that denial, with the reason.
    let request_id = denial["body"]["downstream_request_id"].as_str().unwrap();
    let record = denial_record(&bank, request_id);
    assert_eq!(record["allowed"], false, "{record}");
    assert_eq!(record["reason"], "the account is frozen by compliance");
    assert_eq!(record["input"]["peer"]["workload"], bank::TRANSFERS);
    // The customer's transaction reached accounts: the Transaction Token the gateway minted
    // for eve, verified by accounts, is the policy's `input.txn`.
    assert_eq!(record["input"]["txn"]["sub"], "eve", "{record}");
    assert_eq!(record["input"]["txn"]["req_wl"], bank::GATEWAY, "{record}");
    let shortcut = passed(&report, "chain-shortcut");
    assert_eq!(shortcut["body"]["downstream_error_code"], "POLICY_DENIED");
    let request_id = shortcut["body"]["downstream_request_id"].as_str().unwrap();
    let record = denial_record(&bank, request_id);
    assert_eq!(
        record["reason"],
        "balances move only on the path gateway → transfers → accounts"
    );

    let limited = passed(&report, "rate-limit");
    assert_eq!(limited["statuses"], serde_json::json!([200, 200, 200, 429]));
    assert_eq!(limited["code"], "RATE_LIMITED");
    let retry: u64 = limited["retry_after"].as_str().unwrap().parse().unwrap();
    assert!((1..=5).contains(&retry), "{retry}");

    let fraud = passed(&report, "fraud-block");
    assert_eq!(fraud["status"], 422);
    assert_eq!(fraud["body"]["error_code"], "FRAUD_BLOCKED");
    assert_eq!(fraud["unchanged"], true);

    assert_eq!(passed(&report, "secret-read")["db_user"], DB_USER);
    assert_eq!(
        passed(&report, "secret-renewal")["db_user"],
        scenario::RENEWED_DB_USER
    );

    let rotation = passed(&report, "svid-rotation");
    assert_eq!(rotation["failures"], 0);
    assert!(rotation["rotations"].as_u64().unwrap() >= 2, "{rotation}");
    assert!(rotation["calls"].as_u64().unwrap() >= 3, "{rotation}");

    let tampered = passed(&report, "tampered-chain");
    assert_eq!(tampered["status"], 400);
    assert!(
        tampered["code"].as_str().unwrap().starts_with("CHAIN_"),
        "{tampered}"
    );

    let replay = passed(&report, "replayed-wpt");
    assert_eq!(
        (replay["first"].as_u64(), replay["replay"].as_u64()),
        (Some(200), Some(401))
    );
    assert_eq!(replay["code"], "WIMSE_INVALID");

    assert!(passed(&report, "audit-trail")["records"].as_u64().unwrap() > 0);

    // Every log verified, sealed by each service's final checkpoint at the shutdown.
    let audit = passed(&report, "audit-verify");
    assert!(audit["checkpoints"].as_u64().unwrap() >= 4, "{audit}");
    assert!(
        audit["command"]
            .as_str()
            .unwrap()
            .starts_with("ligand audit verify --service spiffe://"),
        "{audit}"
    );

    // The trust boundary: no token, a forged access token, a call to transfers without a
    // minted Transaction Token or with one the gateway did not sign: each refused.
    assert_eq!(
        passed(&report, "txn-token")["statuses"],
        serde_json::json!([
            "401 ACCESS_TOKEN_MISSING",
            "401 INVALID_TOKEN",
            "401 TXN_TOKEN_MISSING",
            "401 TXN_TOKEN_INVALID"
        ])
    );

    assert!(report.ok());
    assert!(!report.table().contains("skipped ("), "{}", report.table());
    assert_eq!(report.steps.len(), 13);
}

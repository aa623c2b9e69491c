//! The folder watch: edits on disk reload the policy without a restart, a bad edit keeps the
//! last good policy and says why, and an editor's write-and-rename is seen like any write.
//! Real files, a real `notify` watcher; no fixed sleeps: each test waits (bounded) for the
//! watch to publish the reload it expects.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod common;

use std::path::Path;
use std::time::Duration;

use common::{CALLER, request};
use ligand_policy_regorus::{RegorusConfig, RegorusPolicy};
use ligand_runtime::{PolicyEngine, PolicyUpdate, ProviderError};
use tokio::sync::watch;

/// A policy that answers `allowed` to everything, with `tag` as its reason.
fn fixed(allowed: bool, tag: &str) -> String {
    format!("package ligand.authz\n\nimport rego.v1\n\nallow := {allowed}\n\nreason := \"{tag}\"\n")
}

fn write(dir: &Path, file: &str, content: &str) {
    std::fs::write(dir.join(file), content).unwrap();
}

/// The reason the policy in force gives the standard request.
fn reason(policy: &RegorusPolicy) -> String {
    let decision = policy
        .evaluate_now(&request(CALLER, "GET", "/hello/{name}"))
        .unwrap();
    decision.reason.as_deref().unwrap_or_default().to_owned()
}

/// Waits (at most 20 s) for a published reload outcome that satisfies `done`.
async fn until(
    updates: &mut watch::Receiver<PolicyUpdate>,
    mut done: impl FnMut(&PolicyUpdate) -> bool,
) -> PolicyUpdate {
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            updates.changed().await.expect("the watch ended");
            let update = updates.borrow_and_update().clone();
            if done(&update) {
                return update;
            }
        }
    })
    .await
    .expect("no such reload within 20 s")
}

/// A watched engine over a fresh folder holding `fixed(true, "v1")`.
fn watched() -> (
    tempfile::TempDir,
    RegorusPolicy,
    watch::Receiver<PolicyUpdate>,
) {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "policy.rego", &fixed(true, "v1"));
    let policy = RegorusPolicy::new(&RegorusConfig::folder(dir.path())).unwrap();
    let updates = policy.watch().unwrap();
    (dir, policy, updates)
}

#[tokio::test]
async fn an_edited_file_changes_decisions_without_a_restart() {
    let (dir, policy, mut updates) = watched();
    assert_eq!(reason(&policy), "v1");
    assert_eq!(
        *updates.borrow(),
        Ok(None),
        "starts with the policy in force"
    );

    write(dir.path(), "policy.rego", &fixed(false, "v2"));
    let _reloaded = until(&mut updates, |_| reason(&policy) == "v2").await;
    let decision = policy
        .evaluate_now(&request(CALLER, "GET", "/hello/{name}"))
        .unwrap();
    assert!(!decision.allowed);

    // A new file and a data document count as much as an edit.
    write(
        dir.path(),
        "policy.rego",
        "package ligand.authz\n\nimport rego.v1\n\nallow := data.gate.open\n\nreason := \"v3\"\n",
    );
    std::fs::create_dir(dir.path().join("gate")).unwrap();
    write(&dir.path().join("gate"), "data.json", r#"{"open": true}"#);
    let _reloaded = until(&mut updates, |u| u.is_ok() && reason(&policy) == "v3").await;
    assert!(
        policy
            .evaluate_now(&request(CALLER, "GET", "/hello/{name}"))
            .unwrap()
            .allowed
    );
}

#[tokio::test]
async fn a_broken_edit_keeps_the_last_good_policy_and_says_where_it_is_broken() {
    let (dir, policy, mut updates) = watched();

    write(
        dir.path(),
        "policy.rego",
        "package ligand.authz\n\nimport rego.v1\n\nallow if {\n\tinput.peer.workload ==\n}\n",
    );
    let refused = until(&mut updates, Result::is_err).await.unwrap_err();
    let file = dir.path().join("policy.rego").display().to_string();
    assert!(refused.contains(&file), "names the file: {refused}");
    assert!(refused.contains("line"), "names the line: {refused}");
    assert_eq!(reason(&policy), "v1", "the last good policy stays");

    // A policy without the allow rule would deny everything: refused too.
    write(
        dir.path(),
        "policy.rego",
        "package ligand.authz\n\nimport rego.v1\n\nreason := \"no allow\"\n",
    );
    let refused = until(&mut updates, |u| {
        u.as_ref().is_err_and(|e| e.contains("allow"))
    })
    .await
    .unwrap_err();
    assert!(refused.contains("data.ligand.authz.allow"), "{refused}");
    assert_eq!(reason(&policy), "v1");

    write(dir.path(), "policy.rego", &fixed(false, "fixed"));
    let _reloaded = until(&mut updates, Result::is_ok).await;
    assert_eq!(reason(&policy), "fixed");
}

#[tokio::test]
async fn an_editor_that_writes_a_temporary_file_and_renames_it_is_seen() {
    let (dir, policy, mut updates) = watched();

    // vim's `backupcopy=no`, VS Code and most atomic writers: write aside, rename over.
    let aside = dir.path().join(".policy.rego.tmp");
    std::fs::write(&aside, fixed(false, "renamed")).unwrap();
    std::fs::rename(&aside, dir.path().join("policy.rego")).unwrap();
    let _reloaded = until(&mut updates, |_| reason(&policy) == "renamed").await;

    // And again: the watch follows the folder, not the replaced file.
    std::fs::write(&aside, fixed(true, "renamed again")).unwrap();
    std::fs::rename(&aside, dir.path().join("policy.rego")).unwrap();
    let _reloaded = until(&mut updates, |_| reason(&policy) == "renamed again").await;
}

#[tokio::test]
async fn an_edit_made_before_the_watch_starts_is_picked_up_when_it_starts() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "policy.rego", &fixed(true, "v1"));
    let policy = RegorusPolicy::new(&RegorusConfig::folder(dir.path())).unwrap();
    write(dir.path(), "policy.rego", &fixed(true, "during startup"));
    let mut updates = policy.watch().unwrap();
    let _reloaded = until(&mut updates, |_| reason(&policy) == "during startup").await;
}

#[tokio::test]
async fn only_a_watched_folder_has_a_watch() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "policy.rego", &fixed(true, "v1"));
    let off = RegorusPolicy::new(&RegorusConfig::folder(dir.path()).with_watch(false)).unwrap();
    assert!(matches!(off.watch(), Err(ProviderError::NotSupported)));
    let bundle = RegorusPolicy::new(&RegorusConfig::awaiting_bundle()).unwrap();
    assert!(matches!(bundle.watch(), Err(ProviderError::NotSupported)));

    let on = RegorusPolicy::new(&RegorusConfig::folder(dir.path())).unwrap();
    on.close().await.unwrap();
    assert!(matches!(on.watch(), Err(ProviderError::Closed)));
}

#[test]
fn watch_and_shadow_are_read_from_the_policy_table() {
    let config: RegorusConfig = serde_json::from_value(serde_json::json!({
        "folder": "policy",
        "watch": false,
        "shadow": "policy-next",
    }))
    .unwrap();
    assert!(!config.watches());
    let shadow = config.shadow_config().unwrap();
    assert_eq!(shadow.folder.as_deref(), Some(Path::new("policy-next")));
    assert_eq!(shadow.shadow, None);
    assert!(RegorusConfig::folder("policy").watches());
    assert!(!RegorusConfig::bundle("b.tar.gz").watches());
}

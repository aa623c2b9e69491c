//! On inputs the framework builds, regorus's register VM decides the bench policies as the
//! engine does: the same allow and the same reason, and never an error on either side. What
//! this shows is narrow: the RVM's differences (`tests/rvm_semantics.rs`) are all about errors
//! and conflicts, and these policies, on input of these shapes, raise none. It does not make
//! the RVM fail closed on a policy that does.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod common;

use std::path::{Path, PathBuf};

use common::strategies::arb_request;
use ligand_policy_regorus::{RegorusConfig, RegorusPolicy};
use ligand_runtime::EvalRequest;
use proptest::prelude::*;
use regorus::languages::rego::compiler::Compiler;
use regorus::rvm::vm::RegoVM;
use regorus::{Engine, Value};

const ALLOW: &str = "data.ligand.authz.allow";
const REASON: &str = "data.ligand.authz.reason";

fn rbac_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/rbac")
}

/// A VM with the policy in `dir` (`*.rego` anywhere, `data.json` at its directory's path),
/// compiled for the allow and reason rules, strict builtin errors on.
fn vm_for(dir: &Path) -> RegoVM {
    let mut engine = Engine::new();
    engine.set_strict_builtin_errors(true);
    let mut data = serde_json::Map::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        for entry in std::fs::read_dir(&next).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "rego") {
                engine
                    .add_policy(
                        path.display().to_string(),
                        std::fs::read_to_string(&path).unwrap(),
                    )
                    .unwrap();
            } else if path.file_name().is_some_and(|n| n == "data.json") {
                let value: serde_json::Value =
                    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
                let relative = path.parent().unwrap().strip_prefix(dir).unwrap();
                let mut node = &mut data;
                let components: Vec<String> = relative
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect();
                let (last, parents) = components.split_last().unwrap();
                for component in parents {
                    node = node
                        .entry(component.clone())
                        .or_insert_with(|| serde_json::json!({}))
                        .as_object_mut()
                        .unwrap();
                }
                node.insert(last.clone(), value);
            }
        }
    }
    engine
        .add_data(Value::from(serde_json::Value::Object(data)))
        .unwrap();
    let compiled = engine.compile_with_entrypoint(&ALLOW.into()).unwrap();
    let program = Compiler::compile_from_policy(&compiled, &[ALLOW, REASON]).unwrap();
    let mut vm = RegoVM::new();
    vm.set_strict_builtin_errors(true);
    vm.load_program(program);
    vm.set_data(engine.get_data()).unwrap();
    vm
}

/// The VM's decision: allowed only on a boolean `true`, the reason as the engine reports it.
fn vm_decide(vm: &mut RegoVM, request: &EvalRequest) -> (bool, Option<String>) {
    vm.set_input(Value::from(serde_json::to_value(request).unwrap()));
    let allow = vm.execute_entry_point_by_name(ALLOW).expect("no VM error");
    let reason = vm.execute_entry_point_by_name(REASON).expect("no VM error");
    let reason = match reason {
        Value::Undefined => None,
        Value::String(s) => Some(s.as_ref().to_owned()),
        other => Some(other.to_string()),
    };
    (allow == Value::Bool(true), reason)
}

fn agree(policy: &RegorusPolicy, vm: &mut RegoVM, request: &EvalRequest) {
    let reference = policy
        .evaluate_uncached(request)
        .expect("no interpreter error");
    let reference = (reference.allowed, reference.reason.map(|r| r.to_string()));
    assert_eq!(vm_decide(vm, request), reference, "{request:?}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn rbac_decisions_on_the_vm_equal_the_engine(
        requests in proptest::collection::vec(arb_request(), 1..24),
    ) {
        let policy = RegorusPolicy::new(&RegorusConfig::folder(rbac_dir()).with_cache(false)).unwrap();
        let mut vm = vm_for(&rbac_dir());
        for request in &requests {
            agree(&policy, &mut vm, request);
        }
    }

    #[test]
    fn test_policy_decisions_on_the_vm_equal_the_engine(
        requests in proptest::collection::vec(arb_request(), 1..24),
    ) {
        let dir = tempfile::tempdir().unwrap();
        common::write_folder(dir.path(), &[
            ("ligand/authz/policy.rego", &common::policy("rev")),
            ("authz/data.json", &common::data(&[common::CALLER])),
        ]);
        let policy = RegorusPolicy::new(&RegorusConfig::folder(dir.path()).with_cache(false)).unwrap();
        let mut vm = vm_for(dir.path());
        for request in &requests {
            agree(&policy, &mut vm, request);
        }
    }
}

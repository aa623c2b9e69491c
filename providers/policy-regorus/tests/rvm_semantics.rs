//! Where regorus's register VM (`regorus::rvm`) answers differently from its interpreter, on
//! the hazards that decide whether the engine could evaluate on the VM and still fail closed.
//!
//! Each case evaluates one rule on both, with strict builtin errors on both (as the engine
//! runs the interpreter), and pins what each answers in regorus 0.14.1. A case that pins a
//! difference documents a hazard still present; when a regorus upgrade changes one of these
//! answers the test fails, and the conclusions in the crate docs must be revisited.
//!
//! The differences found (regorus 0.14.1, `src/rvm/vm`):
//!
//! - `rules.rs:121` and `rules.rs:177`: when a rule body (or a rule's destructuring block)
//!   fails with any error that `is_fatal_vm_error` (`rules.rs:22`) does not list, the VM drops
//!   the error and treats the body as not matching. Only time, memory, instruction and regex
//!   limits and numeric overflow propagate. A builtin error in strict mode
//!   (`functions.rs`, `Err(err) => return Err(err.into())`) becomes an `ArithmeticError`
//!   through `From<anyhow::Error>` (`errors.rs`), which is not fatal: it is swallowed at the
//!   nearest enclosing rule body, which simply does not match. Every expression of a policy
//!   is inside a rule, so the error never reaches the caller: `not helper` holds when
//!   `helper` failed, `count(deny) == 0` holds when the only deny rule failed, an `else`
//!   chain moves on to its next branch, another body of the same rule can still allow.
//! - `rules.rs:134`: two definitions of a complete rule or function with different values
//!   make it undefined (`rule_failed_due_to_inconsistency`), not an error, and its `default`
//!   does not apply either; a partial object with two values at one key is undefined too.
//! - `dispatch.rs:206` (and the other ordering operators): in strict mode, comparing values
//!   of different types is an error (then swallowed as above), where the interpreter orders
//!   them as OPA does.
//! - An assignment (`x := input.missing`) whose value is undefined does not fail the body
//!   on the VM when `x` is not used again; the interpreter's body fails there. This one
//!   involves no error at all.
//! - `machine.rs:255`: a default limit of 25000 instructions per evaluation, which fails
//!   (fatal) where the interpreter answers.
#![allow(missing_docs, reason = "integration test")]
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test fixtures")]

use std::num::NonZeroU32;
use std::time::Duration;

use regorus::languages::rego::compiler::Compiler;
use regorus::rvm::vm::RegoVM;
use regorus::utils::limits::ExecutionTimerConfig;
use regorus::{Engine, Value};
use serde_json::json;

const RULE: &str = "data.p.allow";

/// What one engine answered for the rule.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    /// A defined value, as JSON text.
    Value(String),
    /// No body matched and no default.
    Undefined,
    /// The evaluation failed.
    Error,
}

use Outcome::{Error, Undefined};

fn value(text: &str) -> Outcome {
    Outcome::Value(text.to_owned())
}

fn outcome<E>(result: Result<Value, E>) -> Outcome {
    match result {
        Ok(Value::Undefined) => Undefined,
        Ok(value) => Outcome::Value(value.to_string()),
        Err(_) => Error,
    }
}

fn engine(policy: &str, data: &serde_json::Value) -> Engine {
    let mut engine = Engine::new();
    engine.set_strict_builtin_errors(true);
    engine
        .add_policy("p.rego".to_owned(), policy.to_owned())
        .unwrap();
    engine.add_data(Value::from(data.clone())).unwrap();
    engine
}

fn limit(ms: u64) -> ExecutionTimerConfig {
    ExecutionTimerConfig {
        limit: Duration::from_millis(ms),
        check_interval: NonZeroU32::MIN.saturating_add(63),
    }
}

/// The interpreter's answer for `RULE`.
fn interpreter(policy: &str, data: &serde_json::Value, input: &serde_json::Value) -> Outcome {
    let mut engine = engine(policy, data);
    engine.set_input(Value::from(input.clone()));
    outcome(engine.eval_rule(RULE.to_owned()))
}

/// A VM loaded with `policy` compiled for `RULE`, strict builtin errors on, no instruction
/// limit to speak of; `None` when the policy does not compile for the VM.
fn vm(policy: &str, data: &serde_json::Value) -> Option<RegoVM> {
    let mut engine = engine(policy, data);
    let compiled = engine.compile_with_entrypoint(&RULE.into()).unwrap();
    let program = Compiler::compile_from_policy(&compiled, &[RULE]).ok()?;
    let mut vm = RegoVM::new();
    vm.set_strict_builtin_errors(true);
    vm.set_max_instructions(usize::MAX);
    vm.load_program(program);
    vm.set_data(engine.get_data()).unwrap();
    Some(vm)
}

/// The VM's answer for `RULE`.
fn rvm(policy: &str, data: &serde_json::Value, input: &serde_json::Value) -> Outcome {
    let mut vm = vm(policy, data).expect("compiles for the VM");
    vm.set_input(Value::from(input.clone()));
    outcome(vm.execute_entry_point_by_name(RULE))
}

/// Both answers for a module of package `p` with `body`.
fn both(body: &str, input: serde_json::Value) -> (Outcome, Outcome) {
    let policy = format!("package p\n\nimport rego.v1\n\n{body}\n");
    let data = json!({});
    (
        interpreter(&policy, &data, &input),
        rvm(&policy, &data, &input),
    )
}

// === builtin errors: swallowed by the VM in every position ===

#[test]
fn a_builtin_error_in_a_rule_body_is_an_error_for_the_interpreter_and_undefined_for_the_vm() {
    let (interp, vm) = both(
        "allow if to_number(input.x) > 0",
        json!({"x": "not a number"}),
    );
    assert_eq!(interp, Error);
    assert_eq!(vm, Undefined);
    // With a default, the VM answers the default: a silent decision.
    let (interp, vm) = both(
        "default allow := false\n\nallow if to_number(input.x) > 0",
        json!({"x": "not a number"}),
    );
    assert_eq!((interp, vm), (Error, value("false")));
}

#[test]
fn a_builtin_error_abandons_the_body_on_the_vm_and_another_body_allows() {
    // Under `not` in the same body, the body is dropped, not negated.
    let (interp, vm) = both(
        "allow if not to_number(input.x) > 0",
        json!({"x": "not a number"}),
    );
    assert_eq!((interp, vm), (Error, Undefined));
    // The interpreter fails the rule; the VM goes on to the next body.
    let (interp, vm) = both(
        "allow if to_number(input.x) > 0\n\nallow if input.admin",
        json!({"x": "not a number", "admin": true}),
    );
    assert_eq!((interp, vm), (Error, value("true")));
}

#[test]
fn a_builtin_error_in_a_negated_rule_allows_on_the_vm() {
    let (interp, vm) = both(
        "negative if to_number(input.x) < 0\n\nallow if not negative",
        json!({"x": "not a number"}),
    );
    assert_eq!((interp, vm), (Error, value("true")));
}

#[test]
fn a_builtin_error_in_a_partial_set_empties_the_set_on_the_vm() {
    let (interp, vm) = both(
        "deny contains \"negative\" if to_number(input.x) < 0\n\nallow if count(deny) == 0",
        json!({"x": "not a number"}),
    );
    assert_eq!((interp, vm), (Error, value("true")));
}

#[test]
fn a_builtin_error_in_a_comprehension_is_swallowed_by_the_vm() {
    let (interp, vm) = both(
        "allow if count([n | some s in input.xs; n := to_number(s); n < 0]) == 0",
        json!({"xs": ["1", "not a number"]}),
    );
    // The comprehension's error abandons the enclosing body.
    assert_eq!((interp, vm), (Error, Undefined));
    // In a helper rule, the helper is undefined and a negation of it holds.
    let (interp, vm) = both(
        "has_negative if count([n | some s in input.xs; n := to_number(s); n < 0]) > 0\n\n\
         allow if not has_negative",
        json!({"xs": ["1", "not a number"]}),
    );
    assert_eq!((interp, vm), (Error, value("true")));
}

#[test]
fn a_builtin_error_in_an_else_chain_moves_the_vm_to_the_next_branch() {
    let (interp, vm) = both(
        "allow := false if to_number(input.x) < 0\n\nelse := true",
        json!({"x": "not a number"}),
    );
    assert_eq!((interp, vm), (Error, value("true")));
}

#[test]
fn a_builtin_error_in_a_function_is_swallowed_by_the_vm() {
    let (interp, vm) = both(
        "negative(s) if to_number(s) < 0\n\nallow if not negative(input.x)",
        json!({"x": "not a number"}),
    );
    assert_eq!((interp, vm), (Error, value("true")));
}

#[test]
fn an_arithmetic_error_is_swallowed_by_the_vm() {
    let (interp, vm) = both("allow if not 10 / input.n > 1", json!({"n": 0}));
    assert_eq!((interp, vm), (Error, Undefined));
    let (interp, vm) = both(
        "large if 10 / input.n > 1\n\nallow if not large",
        json!({"n": 0}),
    );
    assert_eq!((interp, vm), (Error, value("true")));
}

#[test]
fn the_fallible_builtins_of_the_rbac_policy_are_swallowed_by_the_vm() {
    // `split`, `count` and `sprintf` fail on arguments of the wrong type; the RBAC policy's
    // arguments come from `input`, whose types only the framework fixes.
    let (interp, vm) = both(
        "evil if split(input.peer, \"/\")[2] == \"evil.example\"\n\nallow if not evil",
        json!({"peer": 42}),
    );
    assert_eq!((interp, vm), (Error, value("true")));
    let (interp, vm) = both(
        "too_long if count(input.chain) > 5\n\nallow if not too_long",
        json!({"chain": 42}),
    );
    assert_eq!((interp, vm), (Error, value("true")));
}

#[test]
fn the_same_builtin_on_good_arguments_answers_alike() {
    for input in [json!({"x": "5"}), json!({"x": "-5"}), json!({})] {
        let (interp, vm) = both(
            "default allow := false\n\nallow if not to_number(input.x) < 0",
            input.clone(),
        );
        assert_eq!(interp, vm, "{input}");
    }
}

// === comparisons of different types ===

#[test]
fn ordering_values_of_different_types_differs() {
    let (interp, vm) = both("allow if not input.x < 5", json!({"x": "a"}));
    assert_eq!(
        interp,
        value("true"),
        "the interpreter orders a string after a number"
    );
    assert_eq!(
        vm, Undefined,
        "the VM fails the comparison and drops the body"
    );
    let (interp, vm) = both(
        "small if input.x < 5\n\nallow if not small",
        json!({"x": "a"}),
    );
    assert_eq!((interp, vm), (value("true"), value("true")));
    let (interp, vm) = both(
        "large if input.x >= 5\n\nallow if not large",
        json!({"x": "a"}),
    );
    assert_eq!(interp, Undefined, "a string is greater than any number");
    assert_eq!(vm, value("true"));
}

// === conflicts ===

#[test]
fn a_complete_rule_with_two_values_is_an_error_for_the_interpreter_and_undefined_for_the_vm() {
    let body = "allow := true if input.a\n\nallow := false if input.b";
    let (interp, vm) = both(body, json!({"a": true, "b": true}));
    assert_eq!((interp, vm), (Error, Undefined));
    // Not even the default applies.
    let (interp, vm) = both(
        &format!("default allow := false\n\n{body}"),
        json!({"a": true, "b": true}),
    );
    assert_eq!((interp, vm), (Error, Undefined));
    // A helper with two values is undefined, and its negation holds.
    let (interp, vm) = both(
        "blocked := true if input.a\n\nblocked := false if input.b\n\nallow if not blocked",
        json!({"a": true, "b": true}),
    );
    assert_eq!((interp, vm), (Error, value("true")));
    // Only one body matching: both answer it.
    let (interp, vm) = both(body, json!({"a": true}));
    assert_eq!((interp, vm), (value("true"), value("true")));
}

#[test]
fn the_same_value_twice_is_no_conflict_for_either() {
    let (interp, vm) = both(
        "allow := true if input.a\n\nallow := true if input.b",
        json!({"a": true, "b": true}),
    );
    assert_eq!((interp, vm), (value("true"), value("true")));
}

#[test]
fn a_function_with_two_values_is_an_error_for_the_interpreter_and_undefined_for_the_vm() {
    let (interp, vm) = both(
        "f(x) := 1 if x > 0\n\nf(x) := 2 if x > 1\n\nallow if not f(input.n) == 1",
        json!({"n": 5}),
    );
    assert_eq!((interp, vm), (Error, value("true")));
}

#[test]
fn a_partial_object_with_two_values_at_one_key_is_an_error_for_the_interpreter_only() {
    let (interp, vm) = both(
        "obj[k] := 1 if k := input.k\n\nobj[k] := 2 if k := input.k\n\nallow if obj.a == 1",
        json!({"k": "a"}),
    );
    assert_eq!((interp, vm), (Error, Undefined));
}

#[test]
fn data_at_a_rule_path_is_refused_by_the_vm_and_replaces_the_rule_in_the_interpreter() {
    let policy = "package p\n\nimport rego.v1\n\ndefault allow := false\n";
    let data = json!({"p": {"allow": true}});
    let mut engine = engine(policy, &data);
    let compiled = engine.compile_with_entrypoint(&RULE.into()).unwrap();
    let program = Compiler::compile_from_policy(&compiled, &[RULE]).unwrap();
    let mut vm = RegoVM::new();
    vm.load_program(program);
    assert!(vm.set_data(engine.get_data()).is_err(), "the VM refuses");
    // The engine refuses such a policy at load (`tests/conflicts.rs`) before either runs.
}

// === undefined values ===

#[test]
fn assigning_an_undefined_value_fails_the_body_for_the_interpreter_and_matches_on_the_vm() {
    // A body that assigns a missing input field to a variable it does not use again: the
    // interpreter's body fails at the assignment, the VM's goes on. No error is involved, so
    // the hazard stands whatever a gate proves about types.
    for (body, input) in [
        ("allow if { x := input.approval }", json!({})),
        (
            "allow if { x := input.approval.id }",
            json!({"approval": 1}),
        ),
        ("allow if { x := data.nothing }", json!({})),
        (
            "allow if { some link in input.chain; user := link.user }",
            json!({"chain": [{"workload": "w"}]}),
        ),
    ] {
        let (interp, vm) = both(body, input.clone());
        assert_eq!(
            (interp, vm),
            (Undefined, value("true")),
            "{body} on {input}"
        );
    }
    // In a partial set and a comprehension, the VM adds an element the interpreter does not.
    let (interp, vm) = both(
        "marks contains 1 if { x := input.m }\n\nallow := marks",
        json!({}),
    );
    assert_eq!((interp, vm), (value("[]"), value("[1]")));
    let (interp, vm) = both("allow := [1 | x := input.m]", json!({}));
    assert_eq!((interp, vm), (value("[]"), value("[1]")));
    // Unification, and an assigned variable used later, agree.
    for body in [
        "allow if { x = input.m }",
        "allow if { x := input.m; x == 1 }",
        "allow if { x := input.m; x }",
    ] {
        let (interp, vm) = both(body, json!({}));
        assert_eq!((interp, vm), (Undefined, Undefined), "{body}");
    }
}

// === semantics that agree ===

#[test]
fn with_does_not_compile_for_the_vm() {
    for body in [
        "allow if {\n\tinput.x == \"a\" with input.x as \"a\"\n}",
        "ok if input.role == \"admin\"\n\nallow if ok with input.role as \"admin\"",
    ] {
        let policy = format!("package p\n\nimport rego.v1\n\n{body}\n");
        assert_eq!(
            interpreter(&policy, &json!({}), &json!({"x": "b"})),
            value("true")
        );
        assert!(vm(&policy, &json!({})).is_none(), "{body}");
    }
}

#[test]
fn every_and_defaults_agree() {
    let cases = [
        (
            "allow if every v in input.xs { v > 0 }",
            json!({"xs": [1, 2, 3]}),
        ),
        (
            "allow if every v in input.xs { v > 0 }",
            json!({"xs": [1, -2, 3]}),
        ),
        ("allow if every v in input.xs { v > 0 }", json!({"xs": []})),
        (
            "default allow := false\n\nallow if input.ok == true",
            json!({"ok": true}),
        ),
        (
            "default allow := false\n\nallow if input.ok == true",
            json!({"ok": "yes"}),
        ),
        (
            "default allow := false\n\nallow if input.ok == true",
            json!({}),
        ),
    ];
    for (body, input) in cases {
        let (interp, vm) = both(body, input.clone());
        assert_eq!(interp, vm, "{body} on {input}");
    }
}

#[test]
fn a_builtin_error_inside_every_is_swallowed_by_the_vm() {
    let (interp, vm) = both(
        "all_positive if every s in input.xs { to_number(s) > 0 }\n\nallow if not all_positive",
        json!({"xs": ["1", "not a number"]}),
    );
    assert_eq!((interp, vm), (Error, value("true")));
}

// === limits ===

const SLOW: &str = "package p\n\nimport rego.v1\n\n\
    allow if count([x | some x in numbers.range(1, 3000); some y in numbers.range(1, 3000); x == y]) < 0\n";

#[test]
fn the_vm_time_limit_fails_a_slow_policy() {
    let mut vm = vm(SLOW, &json!({})).unwrap();
    vm.set_execution_timer_config(Some(limit(20)));
    vm.set_input(Value::from(json!({})));
    let error = vm.execute_entry_point_by_name(RULE).unwrap_err();
    assert!(error.to_string().contains("time limit"), "{error}");
}

#[test]
fn the_vm_default_instruction_limit_fails_where_the_interpreter_answers() {
    let policy = "package p\n\nimport rego.v1\n\n\
        allow if count([x | some x in numbers.range(1, 10000)]) > 0\n";
    let data = json!({});
    assert_eq!(interpreter(policy, &data, &json!({})), value("true"));
    let mut engine = engine(policy, &data);
    let compiled = engine.compile_with_entrypoint(&RULE.into()).unwrap();
    let program = Compiler::compile_from_policy(&compiled, &[RULE]).unwrap();
    let mut vm = RegoVM::new();
    vm.set_strict_builtin_errors(true);
    vm.load_program(program);
    vm.set_data(engine.get_data()).unwrap();
    vm.set_input(Value::from(json!({})));
    let error = vm.execute_entry_point_by_name(RULE).unwrap_err();
    assert!(error.to_string().contains("nstruction"), "{error}");
}

//! Refuses data documents that overlap rules.
//!
//! regorus lets a value in `data` stand in for a rule at the same path, so a `data.json`
//! holding `{"ligand": {"authz": {"allow": true}}}` would replace the decision rule and allow
//! every request; data inside a helper rule's path changes the decision as surely. OPA refuses
//! such a policy at load ("conflicting rule for data path … found"), and so does this engine,
//! with the same test: a rule at path `p` conflicts with the data when
//!
//! - `data` holds a value at `p`, whatever it is (an object there means data inside the
//!   rule's path);
//! - or a proper prefix of `p` holds a value that is not an object (it would hide the rule).
//!
//! A rule's path is its package followed by the ground part of its head: `p.q[x] := y` owns
//! everything below `p.q`. Every rule counts (complete, partial, default, functions), and so
//! does the module the engine generates to read the decision.

use regorus::unstable::{Expr, Module, Ref, Rule, RuleHead};
use serde_json::Value;

/// A rule and the place in the data tree that overlaps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Conflict {
    /// The rule's path, as `data.a.b`.
    pub(crate) rule: String,
    /// The path of the overlapping value in the data tree: the rule's own path, or the
    /// prefix of it that holds a value other than an object.
    pub(crate) data: String,
    /// The module that defines the rule.
    pub(crate) file: String,
    /// The rule's 1-based line in that module.
    pub(crate) line: u32,
}

/// The first rule, in module and source order, that `data` overlaps.
pub(crate) fn find_conflict(modules: &[Ref<Module>], data: &Value) -> Option<Conflict> {
    for module in modules {
        let package = ground_prefix(&module.package.refr);
        for rule in &module.policy {
            let (span, refr) = match rule.as_ref() {
                Rule::Spec { span, head, .. } => match head {
                    RuleHead::Compr { refr, .. }
                    | RuleHead::Set { refr, .. }
                    | RuleHead::Func { refr, .. } => (span, refr),
                },
                Rule::Default { span, refr, .. } => (span, refr),
            };
            let path = [package.as_slice(), ground_prefix(refr).as_slice()].concat();
            if let Some(depth) = overlap(data, &path) {
                return Some(Conflict {
                    rule: display(&path),
                    data: display(&path[..depth]),
                    file: span.source.file().clone(),
                    line: span.line,
                });
            }
        }
    }
    None
}

/// How many leading components of `path` lead to the overlapping value, if `data` overlaps
/// it: all of them when a value lies at `path`, fewer when a prefix holds a non-object.
fn overlap(data: &Value, path: &[String]) -> Option<usize> {
    let mut node = data;
    for (depth, key) in path.iter().enumerate() {
        let Value::Object(map) = node else {
            return Some(depth);
        };
        node = map.get(key)?;
    }
    Some(path.len())
}

/// The components of a reference up to its first index that is not a string literal, as
/// regorus places rules: `a.b["c"][x].d` gives `["a", "b", "c"]`. A shorter path than the
/// rule's only makes the check stricter, so anything unexpected ends the path.
fn ground_prefix(refr: &Expr) -> Vec<String> {
    let mut reversed = Vec::new();
    let mut expr = refr;
    loop {
        match expr {
            Expr::Var { span, .. } => {
                reversed.push(span.text().to_owned());
                break;
            }
            Expr::RefDot { refr, field, .. } => {
                reversed.push(field.0.text().to_owned());
                expr = refr;
            }
            Expr::RefBrack { refr, index, .. } => {
                match index.as_ref() {
                    Expr::String {
                        value: regorus::Value::String(key),
                        ..
                    } => reversed.push(key.as_ref().to_owned()),
                    // Everything after a variable or other index is below the ground part.
                    _ => reversed.clear(),
                }
                expr = refr;
            }
            // Classification only: no other node kind appears in a rule head or package.
            _ => {
                reversed.clear();
                break;
            }
        }
    }
    reversed.reverse();
    reversed
}

/// `data.a.b["c-d"]`: identifiers after dots, anything else as a quoted index.
fn display(path: &[String]) -> String {
    let mut out = String::from("data");
    for key in path {
        let mut chars = key.chars();
        let is_identifier = chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
        if is_identifier {
            out.push('.');
            out.push_str(key);
        } else {
            out.push('[');
            out.push_str(&Value::String(key.clone()).to_string());
            out.push(']');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use serde_json::json;

    use super::*;

    fn conflict(source: &str, data: Value) -> Option<(String, String)> {
        let mut engine = regorus::Engine::new();
        engine
            .add_policy("policy.rego".to_owned(), source.to_owned())
            .unwrap();
        find_conflict(engine.get_modules(), &data).map(|c| (c.rule, c.data))
    }

    fn pair(rule: &str, data: &str) -> Option<(String, String)> {
        Some((rule.to_owned(), data.to_owned()))
    }

    #[test]
    fn overlaps_follow_opa() {
        let policy = "package a.b\n\nimport rego.v1\n\np := 1\n";
        assert_eq!(conflict(policy, json!({})), None);
        assert_eq!(conflict(policy, json!({"a": {}})), None);
        assert_eq!(conflict(policy, json!({"a": {"b": {"q": 1}}})), None);
        assert_eq!(
            conflict(policy, json!({"a": {"b": {"p": null}}})),
            pair("data.a.b.p", "data.a.b.p")
        );
        assert_eq!(
            conflict(policy, json!({"a": {"b": {"p": {"x": 1}}}})),
            pair("data.a.b.p", "data.a.b.p")
        );
        assert_eq!(
            conflict(policy, json!({"a": {"b": "hidden"}})),
            pair("data.a.b.p", "data.a.b")
        );
        assert_eq!(
            conflict(policy, json!({"a": 1})),
            pair("data.a.b.p", "data.a")
        );
    }

    #[test]
    fn rule_paths_end_at_the_first_non_string_index() {
        let policy = "package a\n\nimport rego.v1\n\nq[\"x-y\"].r[k] := 1 if some k in [1]\n";
        assert_eq!(
            conflict(policy, json!({"a": {"q": {"x-y": {"r": {"other": 1}}}}})),
            pair("data.a.q[\"x-y\"].r", "data.a.q[\"x-y\"].r")
        );
        assert_eq!(conflict(policy, json!({"a": {"q": {"x-z": 1}}})), None);
    }
}

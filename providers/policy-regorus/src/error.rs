//! Why a policy could not be loaded, and why an evaluation failed.

use ligand_opa_bundle::{BundleError, SignatureError};

/// Why a policy (folder or bundle) was refused. On reload the previous policy stays in force.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The configuration is inconsistent (both a folder and a bundle, a key without PEM, a
    /// malformed rule path, ...).
    #[error("invalid policy configuration: {0}")]
    Config(String),
    /// A configured file could not be read.
    #[error("reading {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The bundle or folder is not a well-formed OPA bundle.
    #[error(transparent)]
    Bundle(#[from] BundleError),
    /// The bundle's signature was missing, wrong or did not cover its files.
    #[error("bundle signature rejected: {0}")]
    Signature(#[from] SignatureError),
    /// A Rego module does not parse or compile. The message comes from regorus and shows the
    /// offending line.
    #[error("invalid Rego in {file}{}: {message}", line.map(|l| format!(" at line {l}")).unwrap_or_default())]
    Rego {
        /// The module's path (in the bundle, or on disk for a folder).
        file: String,
        /// The 1-based line of the error, when regorus reported one.
        line: Option<u32>,
        /// regorus's message.
        message: String,
    },
    /// The data documents could not be loaded next to the modules.
    #[error("invalid policy data: {0}")]
    Data(String),
    /// A data document overlaps a rule: it holds a value at the rule's path or inside it, or
    /// a value other than an object at a prefix of it. The value would replace the rule (data
    /// at the allow rule's path would decide every request), so the policy is refused, as OPA
    /// refuses it.
    #[error(
        "conflicting rule and data paths: data at {data} overlaps the rule {rule} defined in {file} at line {line}"
    )]
    RuleDataConflict {
        /// The rule's path (`data.ligand.authz.allow`).
        rule: String,
        /// Where the overlapping value lies in the data tree: the rule's path, or the prefix
        /// of it that holds a value other than an object.
        data: String,
        /// The module that defines the rule.
        file: String,
        /// The rule's 1-based line.
        line: u32,
    },
    /// The policy holds no Rego module.
    #[error("the policy holds no Rego module")]
    NoModules,
    /// No module defines the configured allow rule, so every request would be denied.
    #[error("no module defines the allow rule {0}")]
    MissingAllowRule(String),
}

/// Why an evaluation failed. The framework denies the request (503).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EvalError {
    /// No policy has been loaded yet.
    #[error("no policy loaded")]
    NoPolicy,
    /// The engine was closed.
    #[error("policy engine is closed")]
    Closed,
    /// The request could not be turned into the input document.
    #[error("building the policy input: {0}")]
    Input(#[source] serde_json::Error),
    /// regorus failed: a builtin error, a conflict between rule values, a time limit, ...
    #[error("evaluating Rego policy: {0}")]
    Rego(String),
    /// The evaluation task was lost (it panicked or the runtime shut down).
    #[error("policy evaluation task failed: {0}")]
    Task(String),
}

/// The `(file, line)` regorus reports in an error, from its `--> file:line:col` marker.
pub(crate) fn rego_location(message: &str) -> Option<(String, u32)> {
    let rest = &message[message.find("--> ")? + 4..];
    let location = rest.lines().next()?.trim();
    let mut parts = location.rsplitn(3, ':');
    let _column = parts.next()?;
    let line = parts.next()?.parse().ok()?;
    let file = parts.next()?.to_owned();
    Some((file, line))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn location_is_read_from_regorus_messages() {
        let message = "\n--> policy/authz.rego:6:1\n  |\n6 | }\n  | ^\nerror: expecting expression";
        assert_eq!(
            rego_location(message),
            Some(("policy/authz.rego".to_owned(), 6))
        );
        assert_eq!(rego_location("no marker"), None);
        assert_eq!(rego_location("--> nonsense"), None);
    }
}

//! `ligand policy test` and `ligand policy eval`, evaluated by regorus, the engine the service
//! uses (`ligand-policy-regorus`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use ligand_opa_bundle::{Bundle, Limits};
use regorus::{Engine, Value};

/// `ligand policy test` arguments.
#[derive(Debug, clap::Args)]
pub(crate) struct TestArgs {
    /// The policy folder (default ./policy): every module, `*_test.rego` files included.
    dir: Option<PathBuf>,
    /// Prints every test, not only failures.
    #[arg(short, long)]
    verbose: bool,
    /// Runs only the tests whose `data.<package>.<rule>` path matches this regular expression.
    #[arg(long, value_name = "REGEX")]
    run: Option<String>,
}

/// `ligand policy eval` arguments.
#[derive(Debug, clap::Args)]
pub(crate) struct EvalArgs {
    /// The policy folder (default ./policy).
    #[arg(long, conflicts_with = "bundle")]
    policy: Option<PathBuf>,
    /// An OPA bundle archive (.tar.gz) instead of a folder. Its signature is not checked here.
    #[arg(long)]
    bundle: Option<PathBuf>,
    /// The input document (JSON), as the service builds it: peer, chain, resource, action, …
    #[arg(long)]
    input: PathBuf,
    /// The rule that allows (default the service's, data.ligand.authz.allow).
    #[arg(long, default_value = "data.ligand.authz.allow")]
    query: String,
}

/// The modules and data of a folder or bundle, in an engine.
fn engine(bundle: &Bundle) -> Result<Engine, String> {
    let mut engine = Engine::new();
    for (path, text) in bundle.modules().map_err(|e| crate::chain(&e))? {
        engine
            .add_policy(path.to_owned(), text.to_owned())
            .map_err(|e| format!("{path}: {e}"))?;
    }
    let data = bundle.data().map_err(|e| crate::chain(&e))?;
    if data.as_object().is_some_and(|d| !d.is_empty()) {
        engine
            .add_data_json(&data.to_string())
            .map_err(|e| format!("data: {e}"))?;
    }
    Ok(engine)
}

fn folder(dir: &Path) -> Result<Bundle, String> {
    if !dir.is_dir() {
        return Err(format!("no policy folder at {}", dir.display()));
    }
    Bundle::from_dir(dir).map_err(|e| format!("{}: {}", dir.display(), crate::chain(&e)))
}

/// The `test_*` rules of each module: `data.<package>.<rule>`, in order, once each.
fn tests(bundle: &Bundle) -> Result<Vec<String>, String> {
    let mut found = Vec::new();
    for (_, text) in bundle.modules().map_err(|e| crate::chain(&e))? {
        let mut package = None;
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("package ") {
                package = Some(rest.trim().to_owned());
                continue;
            }
            let Some(package) = &package else { continue };
            if !line.starts_with("test_") {
                continue;
            }
            let name: String = line
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let path = format!("data.{package}.{name}");
            if !found.contains(&path) {
                found.push(path);
            }
        }
    }
    Ok(found)
}

pub(crate) fn test(args: &TestArgs) -> ExitCode {
    let dir = args.dir.clone().unwrap_or_else(|| PathBuf::from("policy"));
    let filter = match args.run.as_deref().map(regex::Regex::new).transpose() {
        Ok(filter) => filter,
        Err(error) => return crate::fail(&format!("--run: {error}")),
    };
    let loaded = folder(&dir).and_then(|bundle| Ok((engine(&bundle)?, tests(&bundle)?)));
    let (engine, tests) = match loaded {
        Ok(loaded) => loaded,
        Err(message) => return crate::fail(&message),
    };
    let (mut passed, mut failed, mut errors) = (0usize, 0usize, 0usize);
    for test in tests
        .iter()
        .filter(|t| filter.as_ref().is_none_or(|f| f.is_match(t)))
    {
        // Each test on its own engine state: no test sees another's input or results.
        let mut engine = engine.clone();
        match engine.eval_rule(test.clone()) {
            Ok(Value::Bool(true)) => {
                passed += 1;
                if args.verbose {
                    println!("{test}: PASS");
                }
            }
            Ok(_) => {
                failed += 1;
                println!("{test}: FAIL");
            }
            Err(error) => {
                errors += 1;
                println!("{test}: ERROR\n  {error}");
            }
        }
    }
    let total = passed + failed + errors;
    println!("{}", "-".repeat(80));
    if total == 0 {
        println!("no tests found");
        return ExitCode::FAILURE;
    }
    println!("PASS: {passed}/{total}");
    if failed > 0 {
        println!("FAIL: {failed}/{total}");
    }
    if errors > 0 {
        println!("ERROR: {errors}/{total}");
    }
    if failed + errors > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

pub(crate) fn eval(args: &EvalArgs) -> ExitCode {
    match decide(args) {
        Ok(decision) => {
            println!("{decision}");
            ExitCode::SUCCESS
        }
        Err(message) => crate::fail(&message),
    }
}

/// `{"allow": …, "reason": …}`: allowed only when the rule is exactly `true`, as the service
/// decides (undefined, any other value, or an error denies).
fn decide(args: &EvalArgs) -> Result<serde_json::Value, String> {
    let bundle = match &args.bundle {
        Some(path) => {
            let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
            Bundle::from_tar_gz(&bytes, &Limits::default())
                .map_err(|e| format!("{}: {}", path.display(), crate::chain(&e)))?
        }
        None => folder(args.policy.as_deref().unwrap_or(Path::new("policy")))?,
    };
    let mut engine = engine(&bundle)?;
    let input = std::fs::read_to_string(&args.input)
        .map_err(|e| format!("{}: {e}", args.input.display()))?;
    engine
        .set_input_json(&input)
        .map_err(|e| format!("{}: {e}", args.input.display()))?;
    let allow = engine
        .eval_rule(args.query.clone())
        .map_err(|e| format!("{}: {e}", args.query))?;
    let allowed = allow == Value::Bool(true);
    let reason_rule = match args.query.rsplit_once('.') {
        Some((package, _)) => format!("{package}.reason"),
        None => "reason".to_owned(),
    };
    let reason = match engine.eval_rule(reason_rule) {
        Ok(Value::String(reason)) => serde_json::Value::String(reason.to_string()),
        _ => serde_json::Value::Null,
    };
    Ok(serde_json::json!({
        "allow": allowed,
        "reason": reason,
        "query": args.query,
    }))
}

//! Rego policy for Ligand on [regorus], Microsoft's Rego interpreter: policy from a folder or
//! an OPA bundle (optionally signed), compiled once, evaluated for every request, and
//! hot-reloaded atomically.
//!
//! ```no_run
//! use ligand_policy_regorus::{KeyConfig, RegorusConfig, RegorusPolicy, SigningConfig};
//! # fn run(config: ligand_runtime::ConfigBuilder) -> Result<(), ligand_policy_regorus::LoadError> {
//! // Development: the local `policy/` folder.
//! let dev = RegorusPolicy::new(&RegorusConfig::folder("policy"))?;
//!
//! // Production: a bundle signed with an ES256 key; unsigned or tampered bundles are refused.
//! let prod = RegorusPolicy::new(
//!     &RegorusConfig::bundle("/etc/ligand/bundle.tar.gz").with_signing(SigningConfig::keys([
//!         KeyConfig::path("bundle-key", "ES256", "/etc/ligand/bundle-key.pub.pem"),
//!     ])),
//! )?;
//! let config = config.policy(prod);
//! # let _ = (dev, config); Ok(()) }
//! ```
//!
//! # The input document
//!
//! Every decision evaluates the rules against `input`, which is exactly
//! `serde_json::to_value(&EvalRequest)` (built directly as regorus values):
//!
//! ```json
//! {
//!   "chain": [
//!     {"workload": "spiffe://bank.example/service/web", "user": "alice@bank.example", "verified": true},
//!     {"workload": "spiffe://bank.example/service/gateway", "verified": true}
//!   ],
//!   "peer": {"workload": "spiffe://bank.example/service/gateway", "verified": true},
//!   "resource": {"kind": "http.path", "value": "/accounts/{id}"},
//!   "action": {"name": "GET"},
//!   "request": {"method": "GET", "path": "/accounts/42", "params": {"id": "42"}},
//!   "txn": {
//!     "txn": "97053963-771d-49cc-a4e3-20aad399c312", "sub": "alice@bank.example",
//!     "scope": "accounts.read", "req_wl": "spiffe://bank.example/service/gateway",
//!     "iss": "https://txn.bank.example", "iat": 1767225600, "exp": 1767225900,
//!     "tctx": {"amount": 100}, "rctx": {"req_ip": "203.0.113.7"}
//!   },
//!   "service": "spiffe://bank.example/service/accounts"
//! }
//! ```
//!
//! - `chain` lists every hop, most distal first; the last link is the verified mTLS peer. A
//!   link carries only the dimensions it has: `workload`, `user`, `device`, `host`,
//!   `external_party`, and `verified`. Links before the peer come from the peer's signed chain
//!   header: the framework verified each hop's signature and certificate before evaluating, so
//!   they carry `"verified": true`; a link built by an application (a trust-boundary gateway's
//!   external caller, for instance) carries `false` unless it set it.
//! - `peer` repeats the last link.
//! - `resource` is the route template (`kind` `http.path`), not the concrete path.
//! - `request.params` holds the route's path parameters, percent-decoded exactly as the
//!   handler's `Path` extractor receives them: match on these. `request.path` is the path as
//!   the client sent it, percent-encoded and not normalised (`/accounts/a%2Fb` for the
//!   parameter `a/b`); a rule on it can disagree with what the handler serves.
//! - `action.name` is the HTTP method or the handler's named action (`debit`).
//! - `service` is this service's own SPIFFE ID.
//! - `txn` is present only when the request carried a Transaction Token (the `Txn-Token`
//!   header) and the service verifies them (`[txn_token]`): the verified claims.
//!   `txn` (the transaction's ID), `sub` (the principal, as the token service names it), `iat`
//!   and `exp` (seconds since the epoch) are always there; `scope` (space-separated),
//!   `req_wl` (the workload that requested the token), `iss`, `tctx` and `rctx` (JSON
//!   objects) only when the token has them. A policy that requires a transaction writes
//!   `input.txn.sub` and is undefined (so denies) without one. The decision cache keys on
//!   the claims the policy reads, each alone (all of them when it reads `input.txn` whole), so
//!   a policy on `scope` reuses decisions across transactions instead of keying on the
//!   transaction's own ID.
//!
//! # The decision
//!
//! The engine reads `data.ligand.authz.allow` and `data.ligand.authz.reason` (both paths
//! configurable, see [`RegorusConfig`]):
//!
//! - only a boolean `true` allows. `false`, any other value and an **undefined** allow (no
//!   rule body matched and no default) deny without error;
//! - the reason, when defined, is reported as [`EvalResponse::reason`] (a string as is, any
//!   other value as JSON); it goes to the audit log, never to the caller;
//! - the bundle's `.manifest` revision is reported as [`EvalResponse::policy_version`], which
//!   the runtime records in every decision event;
//! - an evaluation error denies with an error (the framework answers 503): a builtin error
//!   (builtin errors are strict, so `to_number("x")` fails rather than turning undefined), a
//!   rule defined twice with different values, the time limit, no policy loaded.
//!
//! ```rego
//! package ligand.authz
//!
//! import rego.v1
//!
//! default allow := false
//!
//! # Gateways may read accounts.
//! allow if {
//!     input.peer.workload in data.gateways
//!     input.action.name == "GET"
//!     input.resource.value == "/accounts/{id}"
//! }
//!
//! # Only the transfers service debits, and only on behalf of a user.
//! allow if {
//!     input.peer.workload == "spiffe://bank.example/service/transfers"
//!     input.action.name == "debit"
//!     some link in input.chain
//!     link.user
//! }
//!
//! reason := sprintf("%s may not %s %s", [input.peer.workload, input.action.name, input.resource.value]) if not allow
//! ```
//!
//! Modules use Rego v1 syntax (`if`, `contains`, `in`), as OPA 1.0 does.
//!
//! # Loading
//!
//! A folder is an unpacked bundle: every `*.rego` file is a module, every `data.json` is placed
//! at its directory's path in `data` (`rbac/data.json` becomes `data.rbac`), and an optional
//! `.manifest` gives the revision. A bundle is the same as a `.tar.gz`
//! (see [`ligand_opa_bundle`]). Loading is fail-closed: a module that does not parse or compile
//! is an error naming its file and line; a policy that defines no allow rule is refused, since
//! it would deny everything. Data may not overlap rules: as OPA does, a policy whose data holds
//! a value at a rule's path or inside it, or a value other than an object at a prefix of it, is
//! refused, naming both paths (a `data.json` holding `{"ligand": {"authz": {"allow": true}}}`
//! would otherwise replace the allow rule). With verification keys configured, signatures are required by
//! default and checked as OPA does (every file covered, digests match, known key, right
//! scope). A refused [`reload`](ligand_runtime::PolicyEngine::reload) leaves the previous
//! policy in force.
//!
//! # Changing a folder policy while the service runs
//!
//! A folder policy is watched (turn it off with [`RegorusConfig::watch`] `= false`): any
//! change under the folder, debounced by 250 ms so that an editor's save, a `git checkout` or
//! a `cp -r` makes one reload, reads every file and, when they differ from those last loaded
//! (a `touch` or an editor's dotfile changes nothing), compiles and swaps the policy in
//! atomically, decision cache included. A change that does not load (a parse or compile error,
//! no allow rule, data overlapping a rule) is refused and the last good policy stays in force;
//! the error names the file and line. [`PolicyEngine::watch`](ligand_runtime::PolicyEngine::watch)
//! publishes every outcome, which the framework turns into the Policy health (Degraded with
//! the cause, Ready again at the next good reload).
//!
//! The watch uses `notify` (inotify, FSEvents, ReadDirectoryChanges), not polling: a change
//! shows within the debounce, and an idle service reads nothing. It watches the folder rather
//! than its files, so an editor that writes a temporary file and renames it over the original,
//! or a Kubernetes ConfigMap's symbolic-link swap, is seen like an in-place write. Network
//! file systems that deliver no change events are the exception: there, restart or serve
//! bundles.
//!
//! # Design notes
//!
//! `cargo bench -p ligand-policy-regorus` measures these on the ~50-rule RBAC policy in
//! `benches/rbac` (roles from `data.json`, role inheritance, per-route permissions, chain
//! checks, a reason chain): cold decisions with the cache off, and cached ones.
//!
//! - **One compile, one engine per thread.** regorus evaluates through `&mut Engine`; the
//!   engine is parsed, analysed and prepared once at load. Each thread keeps its own copy for
//!   the revision in force and reuses it (regorus resets its evaluation state at every
//!   evaluation; a copy whose evaluation failed is discarded), so no request clones or drops an
//!   engine and concurrent evaluations share nothing mutable. A generated rule gathers the
//!   allow and reason rules into one document, so that one evaluation computes both and shares
//!   the rules they have in common (about half the cost of two `eval_rule` calls).
//! - **Inline, bounded by the interpreter.** A decision runs on the task that received the
//!   request. Handing it to the blocking pool cost more than a cached decision and a large
//!   share of a cold one (a thread wake-up per request, and a pool that grew to ~100 threads
//!   under load); `block_in_place` panics on a current-thread runtime. A slow policy is bounded
//!   by the interpreter's own time limit, [`RegorusConfig::eval_time_limit_ms`] (default 5 s,
//!   checked every 64 work units), which fails the evaluation and so denies.
//! - **Input as regorus values.** The input document is built directly as regorus values
//!   (shared strings by reference count, object keys made once per thread), not through
//!   `serde_json`; a property test holds it equal to `serde_json::to_value(&EvalRequest)`.
//! - **Interpreter, not the RVM.** regorus can also compile a policy for its register VM
//!   (`regorus::rvm`), which is faster: under callgrind, a cold RBAC decision costs about
//!   1.66 M instructions on the interpreter (through this engine) and about 0.47 M on a
//!   reused VM (0.22 M for the allow rule alone; the reason, a second entry point, repeats
//!   the rules they share). It is not used: in regorus 0.14.1 the VM does not fail closed,
//!   strict builtin errors or not. `tests/rvm_semantics.rs` pins each difference, so that
//!   an upgrade that changes one fails there:
//!   - an error that is not a resource limit (a builtin's error, strict mode included; a
//!     division by zero; ordering values of different types) is dropped at the rule body
//!     that raised it, which then simply does not match (`execute_rule_definitions_common`
//!     in `rvm/vm/rules.rs`). The VM signals an ordinary body that does not match with an
//!     error too (`AssertionFailed`, `rvm/vm/loops.rs`), and that loop drops every error
//!     but the resource limits, so telling the two apart takes a change in regorus. Every
//!     expression lies in some rule, so the error never reaches the caller: a helper rule
//!     that failed reads as undefined, so `not helper` holds, `count(deny) == 0` holds, an
//!     `else` chain takes its next branch, and another body of the same rule can still
//!     allow. The interpreter fails the evaluation, which denies;
//!   - a complete rule or a function whose definitions give two different values is
//!     undefined on the VM (its `default` does not apply either) where the interpreter
//!     reports the conflict; so is a partial object with two values at one key;
//!   - ordering values of different types (`"a" < 5`) is an error on the VM, dropped as
//!     above, where the interpreter orders them as OPA does;
//!   - an assignment whose value is undefined (`x := input.approval`, the field missing)
//!     fails the body on the interpreter, as in OPA, and does not on the VM when the variable
//!     is not used again: the body matches, a partial set gains the element, a
//!     comprehension the term. No error is involved, so even a policy proved free of errors
//!     could allow on the VM where the interpreter denies;
//!   - `with` does not compile for the VM, and its default budget of 25000 instructions
//!     fails evaluations the interpreter completes (`set_max_instructions` lifts it). Its
//!     time limit (`set_execution_timer_config`) is a resource limit, so it does fail the
//!     evaluation.
//!
//!   No syntactic check of a policy rules the first one out: whether `split(peer, "/")` or
//!   `count(input.chain)` fails depends on the types of its arguments, and the RBAC policy
//!   calls both. On the inputs the framework builds, the bench policies raise no error, and
//!   there the VM decides exactly as the interpreter (`tests/rvm_differential.rs`).
//!   Admitting a policy to the VM would take a gate that proves every fallible operation in
//!   it well-typed, from the input document's fixed shape and the loaded data, and every
//!   assignment's value defined, which for an optional input field (`link.user`) it cannot
//!   be; that undefined-assignment case shows the VM also differs where nothing fails, so
//!   such a gate would rest on a differential search for differences nobody has listed yet.
//!
//! # The decision cache
//!
//! Most services see a small set of distinct (caller, route, action) combinations, so most
//! decisions repeat. The engine caches them, and the cache is sound by construction:
//!
//! - at load, a walk of the compiled policy's syntax tree (every module, rule, body, `with`,
//!   comprehension and call) finds every `input` path the policy can read; a bare `input`, a
//!   `with input` or a computed top-level key means the whole input;
//! - the same walk lists every function the policy calls; the cache is on only when each is a
//!   user-defined function or on an allow-list of pure builtins (no `time.*`, `rand.*`,
//!   `uuid.*`, `http.send`, `net.*`, `opa.runtime`, `io.jwt.*`, `crypto.x509.*`, `print`, ...).
//!   [`RegorusPolicy::decision_cache`] says which fields the key holds, or why there is none;
//! - a decision is kept under an exact encoding of those fields (not a hash) inside the
//!   compiled revision, so a reload swaps the cache with the policy, atomically;
//! - only completed evaluations are kept: errors and time-outs are evaluated again;
//! - it holds at most [`RegorusConfig::cache_capacity`] decisions (default 10000, S3-FIFO
//!   eviction through `quick_cache`, the lightweight concurrent cache the ecosystem uses for
//!   exactly this);
//! - each thread that decides keeps the last 64 decisions it looked up in the shared cache
//!   (keys up to 512 bytes) in front of it, so a repeated decision writes nothing other
//!   threads read: a shared hit takes a shard's read lock and marks the entry used. The front
//!   answers only for the revision its decisions came from, and only decisions the shared
//!   cache holds or held enter it;
//! - every request still gets its own decision event, marked `cached`.
//!
//! The RBAC policy in `benches/rbac` reads `input.chain`, `input.peer.workload`,
//! `input.resource.value`, `input.action.name`, `input.request.method` and `input.service`:
//! requests for `/accounts/1` and `/accounts/2` share one decision, since the policy reads the
//! route template, not the concrete path. `cache = false` in `[policy]` turns the cache off.
//! - **Atomic reload.** The policy in force is an `ArcSwap`; an evaluation pins it before it
//!   starts, so a reload never changes a decision in flight, and every decision (allow, reason
//!   and revision) comes from exactly one policy version.
//! - **Wall-clock time limit.** The interpreter checks its time limit against the system
//!   clock, not tokio's: it is a bound on CPU work inside a synchronous call, which a paused
//!   test clock could not stop.
//!
//! [regorus]: https://docs.rs/regorus

#![forbid(unsafe_code)]

mod analysis;
mod cache;
mod compiled;
mod config;
mod conflicts;
mod engine;
mod error;
mod input;
mod loader;
mod watch;

pub use self::config::{
    DEFAULT_ALLOW_RULE, DEFAULT_CACHE_CAPACITY, DEFAULT_EVAL_TIME_LIMIT, DEFAULT_REASON_RULE,
    KeyConfig, RegorusConfig, SigningConfig,
};
pub use self::engine::RegorusPolicy;
pub use self::error::{EvalError, LoadError};

#[cfg(doc)]
use ligand_runtime::EvalResponse;

//! The decision cache: sound by construction.
//!
//! A decision is a function of the policy revision, its data and the parts of `input` the
//! policy can read, provided every builtin it calls is pure. [`crate::analysis`] finds both by
//! walking the compiled policy's syntax tree; this module turns the input paths into a
//! [`KeyPlan`] (the request fields those paths can reach, widened to the whole input for any
//! shape it does not know) and keeps decisions under an exact, injective byte encoding of
//! those fields. The cache lives inside one compiled revision, so a reload swaps it out with
//! the policy, atomically. Only completed evaluations are stored: errors and time-outs never.
//!
//! A hit costs one encoding into a per-thread buffer and one lookup, in the thread's front of
//! recent decisions first (see [`DecisionCache`]); no allocation.

use std::cell::RefCell;
use std::fmt;
use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use ligand_runtime::{Chain, EvalRequest, PathParams, TxnClaims};

use crate::analysis::InputReads;

/// One request field a key can carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Field {
    Chain,
    PeerWorkload,
    PeerUser,
    PeerDevice,
    PeerHost,
    PeerExternalParty,
    PeerVerified,
    ResourceKind,
    ResourceValue,
    ActionName,
    RequestMethod,
    RequestPath,
    RequestParams,
    Service,
    /// Whether a Transaction Token came, and all its claims (`input.txn` read whole, or a
    /// claim outside the documented set).
    Txn,
    TxnId,
    TxnSub,
    TxnScope,
    TxnReqWl,
    TxnIss,
    TxnIat,
    TxnExp,
    TxnTctx,
    TxnRctx,
}

const PEER: [Field; 6] = [
    Field::PeerWorkload,
    Field::PeerUser,
    Field::PeerDevice,
    Field::PeerHost,
    Field::PeerExternalParty,
    Field::PeerVerified,
];

const ALL: [Field; 15] = [
    Field::Chain,
    Field::PeerWorkload,
    Field::PeerUser,
    Field::PeerDevice,
    Field::PeerHost,
    Field::PeerExternalParty,
    Field::PeerVerified,
    Field::ResourceKind,
    Field::ResourceValue,
    Field::ActionName,
    Field::RequestMethod,
    Field::RequestPath,
    Field::RequestParams,
    Field::Service,
    Field::Txn,
];

/// The token's claims one at a time: the fields a plan can hold besides [`ALL`]'s.
const TXN_CLAIMS: [Field; 9] = [
    Field::TxnId,
    Field::TxnSub,
    Field::TxnScope,
    Field::TxnReqWl,
    Field::TxnIss,
    Field::TxnIat,
    Field::TxnExp,
    Field::TxnTctx,
    Field::TxnRctx,
];

/// The bits of the peer's fields and of the token's, each tested once before their fields'.
const PEER_BITS: u32 = bits(&PEER);
const TXN_BITS: u32 = Field::Txn.bit() | bits(&TXN_CLAIMS);

// Every field has a bit of a `u32`.
const _: () = assert!((Field::TxnRctx as u32) < u32::BITS);

const fn bits(fields: &[Field]) -> u32 {
    let mut mask = 0;
    let mut i = 0;
    while i < fields.len() {
        mask |= fields[i].bit();
        i += 1;
    }
    mask
}

impl Field {
    /// The field's bit in a plan's set: one of 24, in the declaration's order.
    const fn bit(self) -> u32 {
        1 << self as u32
    }

    fn name(self) -> &'static str {
        match self {
            Self::Chain => "input.chain",
            Self::PeerWorkload => "input.peer.workload",
            Self::PeerUser => "input.peer.user",
            Self::PeerDevice => "input.peer.device",
            Self::PeerHost => "input.peer.host",
            Self::PeerExternalParty => "input.peer.external_party",
            Self::PeerVerified => "input.peer.verified",
            Self::ResourceKind => "input.resource.kind",
            Self::ResourceValue => "input.resource.value",
            Self::ActionName => "input.action.name",
            Self::RequestMethod => "input.request.method",
            Self::RequestPath => "input.request.path",
            Self::RequestParams => "input.request.params",
            Self::Service => "input.service",
            Self::Txn => "input.txn",
            Self::TxnId => "input.txn.txn",
            Self::TxnSub => "input.txn.sub",
            Self::TxnScope => "input.txn.scope",
            Self::TxnReqWl => "input.txn.req_wl",
            Self::TxnIss => "input.txn.iss",
            Self::TxnIat => "input.txn.iat",
            Self::TxnExp => "input.txn.exp",
            Self::TxnTctx => "input.txn.tctx",
            Self::TxnRctx => "input.txn.rctx",
        }
    }
}

/// The fields a policy's decisions depend on, in a fixed order.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct KeyPlan {
    fields: Vec<Field>,
    /// The same fields as bits ([`Field::bit`]), which [`encode`](Self::encode) tests.
    mask: u32,
}

impl fmt::Debug for KeyPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.fields.iter().map(|field| field.name()))
            .finish()
    }
}

impl fmt::Display for KeyPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, field) in self.fields.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            f.write_str(field.name())?;
        }
        Ok(())
    }
}

impl KeyPlan {
    /// The fields `reads` can reach. Any path outside the documented input shape keys on the
    /// whole input.
    pub(crate) fn new(reads: &InputReads) -> Self {
        let paths = match reads {
            InputReads::Whole => return Self::whole(),
            InputReads::Paths(paths) => paths,
        };
        let mut fields = Vec::new();
        for path in paths {
            match fields_of(path) {
                Some(found) => fields.extend_from_slice(found),
                None => return Self::whole(),
            }
        }
        Self::of(fields)
    }

    fn of(mut fields: Vec<Field>) -> Self {
        fields.sort_unstable();
        fields.dedup();
        let mask = fields.iter().fold(0, |mask, field| mask | field.bit());
        Self { fields, mask }
    }

    /// Every field: the key is the whole input.
    pub(crate) fn whole() -> Self {
        Self::of(ALL.to_vec())
    }

    /// Writes the key of `request` into `out`: each field length-prefixed (and optional fields
    /// tagged), so two requests share a key only if they agree on every planned field.
    ///
    /// The fields are written in [`Field`]'s order, the plan's, each behind a test of the
    /// plan's bit set: a run of well-predicted branches over compact code, where a loop over
    /// the plan's list dispatched through a jump table per field (an indirect branch that
    /// changes target on every field, and code for all 24 fields spread over 5 KB).
    pub(crate) fn encode(&self, request: &EvalRequest, out: &mut Vec<u8>) {
        out.clear();
        let has = |field: Field| self.mask & field.bit() != 0;
        if has(Field::Chain) {
            chain(&request.chain, out);
        }
        let peer = &request.peer;
        if self.mask & PEER_BITS != 0 {
            for (field, value) in [
                (Field::PeerWorkload, &peer.workload),
                (Field::PeerUser, &peer.user),
                (Field::PeerDevice, &peer.device),
                (Field::PeerHost, &peer.host),
                (Field::PeerExternalParty, &peer.external_party),
            ] {
                if has(field) {
                    optional(value.as_ref(), out);
                }
            }
            if has(Field::PeerVerified) {
                out.push(u8::from(peer.verified));
            }
        }
        if has(Field::ResourceKind) {
            bytes(&request.resource.kind, out);
        }
        if has(Field::ResourceValue) {
            bytes(&request.resource.value, out);
        }
        if has(Field::ActionName) {
            bytes(&request.action.name, out);
        }
        if has(Field::RequestMethod) {
            bytes(request.request.method.as_str(), out);
        }
        if has(Field::RequestPath) {
            bytes(&request.request.path, out);
        }
        if has(Field::RequestParams) {
            params(&request.request.params, out);
        }
        if has(Field::Service) {
            bytes(&request.service, out);
        }
        if self.mask & TXN_BITS != 0 {
            self.encode_txn(request.txn.as_deref(), out);
        }
    }

    /// The Transaction Token's fields of the key, out of line: most policies read none.
    #[inline(never)]
    fn encode_txn(&self, claims: Option<&TxnClaims>, out: &mut Vec<u8>) {
        let has = |field: Field| self.mask & field.bit() != 0;
        if has(Field::Txn) {
            txn(claims, out);
        }
        // One claim: a request without a token reads it as undefined, as it does an absent
        // optional claim, so the two may share a key.
        let claim = |get: fn(&TxnClaims) -> Option<&Arc<str>>, out: &mut Vec<u8>| {
            optional(claims.and_then(get), out);
        };
        if has(Field::TxnId) {
            claim(|c| Some(&c.txn), out);
        }
        if has(Field::TxnSub) {
            claim(|c| Some(&c.sub), out);
        }
        if has(Field::TxnScope) {
            claim(|c| c.scope.as_ref(), out);
        }
        if has(Field::TxnReqWl) {
            claim(|c| c.req_wl.as_ref(), out);
        }
        if has(Field::TxnIss) {
            claim(|c| c.iss.as_ref(), out);
        }
        if has(Field::TxnIat) {
            number(claims.map(|c| c.iat), out);
        }
        if has(Field::TxnExp) {
            number(claims.map(|c| c.exp), out);
        }
        if has(Field::TxnTctx) {
            json(claims.and_then(|c| c.tctx.as_ref()), out);
        }
        if has(Field::TxnRctx) {
            json(claims.and_then(|c| c.rctx.as_ref()), out);
        }
    }
}

/// The fields under `path`, or `None` when the path leaves the documented shape.
fn fields_of(path: &[String]) -> Option<&'static [Field]> {
    let segments: Vec<&str> = path.iter().map(String::as_str).collect();
    Some(match segments.as_slice() {
        [] => &ALL,
        ["chain", ..] => &[Field::Chain],
        ["peer"] => &PEER,
        ["peer", "workload", ..] => &[Field::PeerWorkload],
        ["peer", "user", ..] => &[Field::PeerUser],
        ["peer", "device", ..] => &[Field::PeerDevice],
        ["peer", "host", ..] => &[Field::PeerHost],
        ["peer", "external_party", ..] => &[Field::PeerExternalParty],
        ["peer", "verified", ..] => &[Field::PeerVerified],
        ["resource"] => &[Field::ResourceKind, Field::ResourceValue],
        ["resource", "kind", ..] => &[Field::ResourceKind],
        ["resource", "value", ..] => &[Field::ResourceValue],
        ["action"] | ["action", "name", ..] => &[Field::ActionName],
        ["request"] => &[
            Field::RequestMethod,
            Field::RequestPath,
            Field::RequestParams,
        ],
        ["request", "method", ..] => &[Field::RequestMethod],
        ["request", "path", ..] => &[Field::RequestPath],
        ["request", "params", ..] => &[Field::RequestParams],
        ["service", ..] => &[Field::Service],
        // A claim alone: a policy that reads `scope` must not key on the transaction's own
        // identifier, unique per transaction, or no decision would ever be reused.
        ["txn", "txn", ..] => &[Field::TxnId],
        ["txn", "sub", ..] => &[Field::TxnSub],
        ["txn", "scope", ..] => &[Field::TxnScope],
        ["txn", "req_wl", ..] => &[Field::TxnReqWl],
        ["txn", "iss", ..] => &[Field::TxnIss],
        ["txn", "iat", ..] => &[Field::TxnIat],
        ["txn", "exp", ..] => &[Field::TxnExp],
        ["txn", "tctx", ..] => &[Field::TxnTctx],
        ["txn", "rctx", ..] => &[Field::TxnRctx],
        ["txn", ..] => &[Field::Txn],
        _ => return None,
    })
}

fn bytes(value: &str, out: &mut Vec<u8>) {
    // Inputs are bounded far below 4 GiB (headers, paths, SPIFFE IDs); saturating keeps the
    // encoding total, and the bytes that follow still separate any two values.
    let len = u32::try_from(value.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(value.as_bytes());
}

fn params(params: &PathParams, out: &mut Vec<u8>) {
    let len = u32::try_from(params.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_le_bytes());
    for (name, value) in params.iter() {
        bytes(name, out);
        bytes(value, out);
    }
}

fn optional(value: Option<&Arc<str>>, out: &mut Vec<u8>) {
    match value {
        None => out.push(0),
        Some(value) => {
            out.push(1);
            bytes(value, out);
        }
    }
}

fn chain(chain: &Chain, out: &mut Vec<u8>) {
    let len = u32::try_from(chain.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_le_bytes());
    // Every dimension the runtime knows a link to have, so a field added to `Link` is part of
    // the key without a change here, and whether the link was verified.
    for link in chain.links() {
        out.push(u8::from(link.verified));
        for (_, field) in link.dimensions() {
            optional(field, out);
        }
    }
}

/// The Transaction Token claims: absent or present, then every claim.
fn txn(claims: Option<&TxnClaims>, out: &mut Vec<u8>) {
    let Some(claims) = claims else {
        out.push(0);
        return;
    };
    out.push(1);
    bytes(&claims.txn, out);
    bytes(&claims.sub, out);
    optional(claims.scope.as_ref(), out);
    optional(claims.req_wl.as_ref(), out);
    optional(claims.iss.as_ref(), out);
    out.extend_from_slice(&claims.iat.to_le_bytes());
    out.extend_from_slice(&claims.exp.to_le_bytes());
    json(claims.tctx.as_ref(), out);
    json(claims.rctx.as_ref(), out);
}

fn number(value: Option<i64>, out: &mut Vec<u8>) {
    match value {
        None => out.push(0),
        Some(value) => {
            out.push(1);
            out.extend_from_slice(&value.to_le_bytes());
        }
    }
}

/// A context object as its JSON text (which determines it), length-prefixed.
fn json(value: Option<&serde_json::Value>, out: &mut Vec<u8>) {
    let Some(value) = value else {
        out.push(0);
        return;
    };
    out.push(1);
    // Written in place behind its length, so a hit still allocates nothing. A `Value` always
    // serializes to a `Vec`.
    let at = out.len();
    out.extend_from_slice(&[0; 4]);
    let _ = serde_json::to_writer(&mut *out, value);
    let len = u32::try_from(out.len() - at - 4).unwrap_or(u32::MAX);
    out[at..at + 4].copy_from_slice(&len.to_le_bytes());
}

/// What a cached decision keeps: the outcome and the reason.
#[derive(Debug, Clone)]
pub(crate) struct Cached {
    pub(crate) allowed: bool,
    pub(crate) reason: Option<Arc<str>>,
}

impl Cached {
    /// The same decision with a reason of its own, for a thread's front: each request's
    /// record takes a count on its reason, and a reason shared by every thread would have
    /// them all write the same cache line for it.
    fn for_this_thread(&self) -> Self {
        Self {
            allowed: self.allowed,
            reason: self.reason.as_deref().map(Arc::from),
        }
    }
}

/// A bounded cache of decisions for one compiled revision, with a small front of recent
/// decisions on each thread that looks decisions up.
///
/// The shared cache is a `quick_cache` map: a hit there takes a shard's read lock and marks
/// the entry as used, two writes to cache lines every thread that decides writes too. A
/// thread's front ([`Front`]) serves a decision it has already looked up with no write
/// outside the thread. The front is direct-mapped, and holds at most [`FRONT_ENTRIES`]
/// decisions of keys up to [`FRONT_KEY_MAX`] bytes; a decision enters it from the shared
/// cache, so the shared cache's bound and its choice of what to keep still govern what is
/// decided once and kept. The front answers only for the cache its decisions came from
/// (`id`): a thread's first lookup after a reload empties it.
pub(crate) struct DecisionCache {
    /// Tells this cache's decisions apart in the threads' fronts.
    id: u64,
    plan: KeyPlan,
    entries: quick_cache::sync::Cache<Box<[u8]>, Cached>,
}

impl fmt::Debug for DecisionCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DecisionCache")
            .field("plan", &self.plan)
            .field("len", &self.entries.len())
            .finish()
    }
}

/// How many decisions each thread's front holds.
const FRONT_ENTRIES: usize = 64;

/// The longest key a thread's front keeps a decision for (longer ones are looked up in the
/// shared cache every time): with [`FRONT_ENTRIES`], what bounds a front's memory.
const FRONT_KEY_MAX: usize = 512;

/// Identifies each decision cache in the threads' fronts.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A thread's recent decisions: one place per key hash, the newest decision looked up for a
/// hash in it.
#[derive(Default)]
struct Front {
    /// The cache the decisions came from.
    cache: u64,
    entries: Vec<FrontEntry>,
}

#[derive(Default)]
struct FrontEntry {
    hash: u64,
    /// Reused from one decision to the next in this place, so that a new one allocates only
    /// when its key is longer than any before.
    key: Vec<u8>,
    decision: Option<Cached>,
}

impl Front {
    /// The place for `hash` in `cache`'s front: emptied first when the front held another
    /// cache's decisions.
    fn place(&mut self, cache: u64, hash: u64) -> &mut FrontEntry {
        if self.cache != cache {
            self.cache = cache;
            self.entries.clear();
            self.entries.resize_with(FRONT_ENTRIES, FrontEntry::default);
        }
        // The low bits of a foldhash are as good as any.
        let at = usize::try_from(hash % FRONT_ENTRIES as u64).unwrap_or_default();
        &mut self.entries[at]
    }
}

impl FrontEntry {
    fn get(&self, hash: u64, key: &[u8]) -> Option<&Cached> {
        self.decision
            .as_ref()
            .filter(|_| self.hash == hash && self.key == key)
    }

    fn keep(&mut self, hash: u64, key: &[u8], decision: Cached) {
        self.hash = hash;
        self.key.clear();
        self.key.extend_from_slice(key);
        self.decision = Some(decision);
    }
}

/// A thread's lookup state: the key being looked up, reused so that a hit allocates nothing,
/// and the front.
#[derive(Default)]
struct Local {
    key: Vec<u8>,
    front: Front,
}

thread_local! {
    static LOCAL: RefCell<Local> = RefCell::default();
}

impl Local {
    /// `request`'s decision in `cache`, from this thread's front or the shared cache; the
    /// key to keep a new decision under on a miss.
    fn lookup(
        &mut self,
        cache: &DecisionCache,
        request: &EvalRequest,
    ) -> Result<Cached, Box<[u8]>> {
        let Self { key, front } = self;
        cache.plan.encode(request, key);
        let hash = foldhash::fast::FixedState::default().hash_one(key.as_slice());
        let place = front.place(cache.id, hash);
        if let Some(hit) = place.get(hash, key) {
            return Ok(hit.clone());
        }
        match cache.entries.get(key.as_slice()) {
            Some(hit) => {
                if key.len() <= FRONT_KEY_MAX {
                    place.keep(hash, key, hit.for_this_thread());
                }
                Ok(hit)
            }
            None => Err(Box::from(key.as_slice())),
        }
    }
}

impl DecisionCache {
    pub(crate) fn new(plan: KeyPlan, capacity: usize) -> Self {
        Self {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            plan,
            entries: quick_cache::sync::Cache::new(capacity.max(1)),
        }
    }

    pub(crate) fn plan(&self) -> &KeyPlan {
        &self.plan
    }

    /// The cached decision for `request`, or computes it with `decide` and keeps it when it
    /// succeeds.
    pub(crate) fn get_or_decide<E>(
        &self,
        request: &EvalRequest,
        decide: impl FnOnce() -> Result<Cached, E>,
    ) -> Result<(Cached, bool), E> {
        // The hit, or the key to keep the new decision under.
        let found = LOCAL.with(|local| match local.try_borrow_mut() {
            Ok(mut local) => local.lookup(self, request),
            // Re-entered on this thread (not expected): a fresh buffer and no front.
            Err(_) => Local::default().lookup(self, request),
        });
        match found {
            Ok(hit) => Ok((hit, true)),
            Err(key) => {
                let decided = decide()?;
                self.entries.insert(key, decided.clone());
                Ok((decided, false))
            }
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use ligand_runtime::{Action, RequestLine, Resource};

    use super::*;
    use ligand_runtime::Link;

    fn paths(paths: &[&[&str]]) -> InputReads {
        InputReads::Paths(
            paths
                .iter()
                .map(|p| p.iter().map(|s| (*s).to_owned()).collect())
                .collect(),
        )
    }

    fn request(peer: &str, path: &str) -> EvalRequest {
        EvalRequest::new(
            Chain::from(vec![Link::workload(peer)]),
            Link::workload(peer),
            Resource::http_path("/accounts/{id}"),
            Action::new("GET"),
            RequestLine::new(http::Method::GET, path),
            "spiffe://example.org/service/accounts",
        )
    }

    /// Every field a plan can hold, [`ALL`]'s and the token's claims, passes through this
    /// match without a wildcard: a field added to [`Field`] does not compile here until it is
    /// listed, and the test below then fails until it is in one of the two lists and
    /// `encode` writes it.
    fn listed(field: Field) -> Field {
        match field {
            Field::Chain
            | Field::PeerWorkload
            | Field::PeerUser
            | Field::PeerDevice
            | Field::PeerHost
            | Field::PeerExternalParty
            | Field::PeerVerified
            | Field::ResourceKind
            | Field::ResourceValue
            | Field::ActionName
            | Field::RequestMethod
            | Field::RequestPath
            | Field::RequestParams
            | Field::Service
            | Field::Txn
            | Field::TxnId
            | Field::TxnSub
            | Field::TxnScope
            | Field::TxnReqWl
            | Field::TxnIss
            | Field::TxnIat
            | Field::TxnExp
            | Field::TxnTctx
            | Field::TxnRctx => field,
        }
    }

    /// `encode` tests each field's bit by hand, without a match that would make it cover
    /// every field: a field in a plan that it did not write would let requests that differ
    /// in it share a decision. Every field writes at least a length or a presence tag.
    #[test]
    fn every_field_a_plan_can_hold_is_written() {
        let request = request("spiffe://example.org/service/caller", "/accounts/7");
        let every: Vec<Field> = ALL.iter().chain(&TXN_CLAIMS).copied().map(listed).collect();
        let mut seen = 0;
        for &field in &every {
            let plan = KeyPlan::of(vec![field]);
            assert!(!key(&plan, &request).is_empty(), "{field:?} is not written");
            seen |= field.bit();
        }
        assert_eq!(
            seen.count_ones() as usize,
            every.len(),
            "a field listed twice"
        );
        assert_eq!(
            every.len(),
            Field::TxnRctx as usize + 1,
            "a field in neither list"
        );
        // Two fields write both, in the plan's order.
        let both = KeyPlan::of(vec![Field::Service, Field::Chain]);
        let (chain, service) = (
            key(&KeyPlan::of(vec![Field::Chain]), &request),
            key(&KeyPlan::of(vec![Field::Service]), &request),
        );
        assert_eq!(key(&both, &request), [chain, service].concat());
    }

    fn key(plan: &KeyPlan, request: &EvalRequest) -> Vec<u8> {
        let mut out = Vec::new();
        plan.encode(request, &mut out);
        out
    }

    #[test]
    fn plans_follow_the_documented_shape_and_widen_otherwise() {
        let plan = KeyPlan::new(&paths(&[&["peer", "workload"], &["resource", "value"]]));
        assert_eq!(plan.fields, [Field::PeerWorkload, Field::ResourceValue]);
        assert_eq!(
            KeyPlan::new(&paths(&[&["request"]])).fields,
            [
                Field::RequestMethod,
                Field::RequestPath,
                Field::RequestParams
            ]
        );
        assert_eq!(
            KeyPlan::new(&paths(&[&["request", "params", "id"]])).fields,
            [Field::RequestParams]
        );
        assert_eq!(
            KeyPlan::new(&paths(&[&["chain", "0"]])).fields,
            [Field::Chain]
        );
        assert_eq!(
            KeyPlan::new(&paths(&[&["txn", "sub"], &["txn"]])).fields,
            [Field::Txn, Field::TxnSub]
        );
        assert_eq!(
            KeyPlan::new(&paths(&[&["txn", "scope"], &["txn", "tctx", "amount"]])).fields,
            [Field::TxnScope, Field::TxnTctx]
        );
        assert_eq!(
            KeyPlan::new(&paths(&[&["txn", "nonsense"]])).fields,
            [Field::Txn]
        );
        for unknown in [
            &["transaction"][..],
            &["peer", "admin"],
            &["resource", "x"],
            &[],
        ] {
            assert_eq!(
                KeyPlan::new(&paths(&[unknown])),
                KeyPlan::whole(),
                "{unknown:?}"
            );
        }
        assert_eq!(KeyPlan::new(&InputReads::Whole), KeyPlan::whole());
    }

    #[test]
    fn keys_ignore_unread_fields_and_separate_read_ones() {
        let plan = KeyPlan::new(&paths(&[&["peer", "workload"], &["resource", "value"]]));
        let a = request("spiffe://example.org/a", "/accounts/1");
        let b = request("spiffe://example.org/a", "/accounts/2");
        let c = request("spiffe://example.org/b", "/accounts/1");
        assert_eq!(
            key(&plan, &a),
            key(&plan, &b),
            "the concrete path is not read"
        );
        assert_ne!(key(&plan, &a), key(&plan, &c));
        let whole = KeyPlan::whole();
        assert_ne!(key(&whole, &a), key(&whole, &b));
    }

    #[test]
    fn keys_on_txn_separate_every_claim_and_its_absence() {
        let plan = KeyPlan::new(&paths(&[&["txn"]]));
        let base = request("spiffe://example.org/a", "/");
        let with = |edit: &dyn Fn(&mut TxnClaims)| {
            let mut claims = TxnClaims::new("t", "s", 1, 2);
            edit(&mut claims);
            key(&plan, &base.clone().with_txn(Some(Arc::new(claims))))
        };
        let keys = [
            key(&plan, &base),
            with(&|_| {}),
            with(&|c| c.sub = "s2".into()),
            with(&|c| c.txn = "t2".into()),
            with(&|c| c.scope = Some("read".into())),
            with(&|c| c.req_wl = Some("w".into())),
            with(&|c| c.iss = Some("i".into())),
            with(&|c| c.iat = 3),
            with(&|c| c.exp = 3),
            with(&|c| c.tctx = Some(serde_json::json!({"a": 1}))),
            with(&|c| c.rctx = Some(serde_json::json!({"a": 1}))),
            with(&|c| c.tctx = Some(serde_json::json!({"a": 2}))),
        ];
        for (i, a) in keys.iter().enumerate() {
            for b in &keys[i + 1..] {
                assert_ne!(a, b);
            }
        }
        assert!(KeyPlan::whole().fields.contains(&Field::Txn));
    }

    #[test]
    fn a_policy_reading_one_claim_shares_decisions_across_transactions() {
        let plan = KeyPlan::new(&paths(&[&["txn", "scope"]]));
        let base = request("spiffe://example.org/a", "/");
        let with = |txn: &str, scope: Option<&str>| {
            let mut claims = TxnClaims::new(txn, "alice", 1, 2);
            claims.scope = scope.map(Into::into);
            key(&plan, &base.clone().with_txn(Some(Arc::new(claims))))
        };
        // Another transaction with the same scope: the same key.
        assert_eq!(with("t1", Some("read")), with("t2", Some("read")));
        assert_ne!(with("t1", Some("read")), with("t1", Some("write")));
        // No token and a token without `scope` both read as undefined.
        assert_eq!(key(&plan, &base), with("t1", None));
        assert_ne!(key(&plan, &base), with("t1", Some("read")));
        // Each claim is keyed by itself.
        for (path, edit) in [
            (
                "txn",
                &(|c: &mut TxnClaims| c.txn = "t9".into()) as &dyn Fn(&mut TxnClaims),
            ),
            ("sub", &|c| c.sub = "bob".into()),
            ("req_wl", &|c| c.req_wl = Some("w".into())),
            ("iss", &|c| c.iss = Some("i".into())),
            ("iat", &|c| c.iat = 9),
            ("exp", &|c| c.exp = 9),
            ("tctx", &|c| c.tctx = Some(serde_json::json!({"amount": 5}))),
            ("rctx", &|c| c.rctx = Some(serde_json::json!({"ip": "x"}))),
        ] {
            let plan = KeyPlan::new(&paths(&[&["txn", path]]));
            let plain = TxnClaims::new("t1", "alice", 1, 2);
            let mut edited = plain.clone();
            edit(&mut edited);
            let key_of = |c: TxnClaims| key(&plan, &base.clone().with_txn(Some(Arc::new(c))));
            assert_ne!(key_of(plain.clone()), key_of(edited), "{path}");
            let mut other = plain.clone();
            if path != "scope" {
                other.scope = Some("unrelated".into());
            }
            assert_eq!(key_of(plain), key_of(other), "{path} ignores scope");
        }
    }

    #[test]
    fn encoding_is_injective_across_field_boundaries() {
        let plan = KeyPlan::new(&paths(&[&["peer"]]));
        let mut x = request("ab", "/");
        x.peer.user = Some("c".into());
        let mut y = request("a", "/");
        y.peer.user = Some("bc".into());
        assert_ne!(key(&plan, &x), key(&plan, &y));
        let mut z = request("ab", "/");
        z.peer.user = None;
        z.peer.device = Some("c".into());
        assert_ne!(key(&plan, &x), key(&plan, &z));
    }

    #[test]
    fn keys_separate_verified_links_from_unverified_ones() {
        // A policy granting trust only to verified upstream hops must not be answered, for a
        // forged link, with the decision cached for the verified one.
        let verified = |chain_verified: bool, peer_verified: bool| {
            let mut r = request("spiffe://example.org/a", "/");
            let mut upstream = Link::workload("spiffe://example.org/gateway");
            upstream.verified = chain_verified;
            let mut peer = r.peer.clone();
            peer.verified = peer_verified;
            r.chain = Chain::from(vec![upstream, peer.clone()]);
            r.peer = peer;
            r
        };
        let chain = KeyPlan::new(&paths(&[&["chain", "0", "verified"]]));
        assert_ne!(
            key(&chain, &verified(true, true)),
            key(&chain, &verified(false, true))
        );
        for plan in [
            KeyPlan::new(&paths(&[&["peer", "verified"]])),
            KeyPlan::new(&paths(&[&["peer"]])),
            KeyPlan::whole(),
        ] {
            assert_ne!(
                key(&plan, &verified(true, true)),
                key(&plan, &verified(true, false)),
                "{plan:?}"
            );
        }
    }

    #[test]
    fn keys_on_params_separate_values_and_boundaries() {
        let plan = KeyPlan::new(&paths(&[&["request", "params", "id"]]));
        let with = |pairs: &[(&str, &str)]| {
            let mut params = PathParams::new();
            for (name, value) in pairs {
                params.push(*name, *value);
            }
            let mut r = request("spiffe://example.org/a", "/accounts/x");
            r.request = r.request.with_params(params);
            r
        };
        assert_eq!(
            key(&plan, &with(&[("id", "1")])),
            key(&plan, &with(&[("id", "1")]))
        );
        assert_ne!(
            key(&plan, &with(&[("id", "1")])),
            key(&plan, &with(&[("id", "2")]))
        );
        assert_ne!(
            key(&plan, &with(&[("ab", "c")])),
            key(&plan, &with(&[("a", "bc")]))
        );
        assert_ne!(
            key(&plan, &with(&[("id", "1")])),
            key(&plan, &with(&[("id", "1"), ("x", "")]))
        );
    }

    #[test]
    fn errors_are_not_kept() {
        let cache = DecisionCache::new(KeyPlan::whole(), 16);
        let r = request("spiffe://example.org/a", "/");
        let failed: Result<_, &str> = cache.get_or_decide(&r, || Err("boom"));
        assert!(failed.is_err());
        assert_eq!(cache.len(), 0);
        let (first, hit) = cache
            .get_or_decide::<()>(&r, || {
                Ok(Cached {
                    allowed: true,
                    reason: None,
                })
            })
            .unwrap();
        assert!(first.allowed && !hit);
        let (second, hit) = cache
            .get_or_decide::<()>(&r, || panic!("a hit must not evaluate"))
            .unwrap();
        assert!(second.allowed && hit);
    }

    fn allowed(reason: &str) -> Result<Cached, ()> {
        Ok(Cached {
            allowed: true,
            reason: Some(Arc::from(reason)),
        })
    }

    #[test]
    fn a_thread_answers_a_decision_it_looked_up_from_its_front() {
        let cache = DecisionCache::new(KeyPlan::whole(), 16);
        let r = request("spiffe://example.org/a", "/");
        assert!(!cache.get_or_decide(&r, || allowed("decided")).unwrap().1);
        // From the shared cache, which puts it in this thread's front.
        assert!(cache.get_or_decide::<()>(&r, || panic!("kept")).unwrap().1);
        cache.entries.clear();
        let (front, hit) = cache
            .get_or_decide::<()>(&r, || panic!("the front must answer"))
            .unwrap();
        assert!(hit && front.allowed);
        assert_eq!(front.reason.as_deref(), Some("decided"));
    }

    #[test]
    fn a_front_answers_only_for_the_cache_its_decisions_came_from() {
        let plan = || KeyPlan::new(&paths(&[&["request", "path"]]));
        let (old, new) = (
            DecisionCache::new(plan(), 16),
            DecisionCache::new(plan(), 16),
        );
        let r = request("spiffe://example.org/a", "/");
        for _ in 0..2 {
            old.get_or_decide(&r, || allowed("old")).unwrap();
        }
        // The same key in the next revision's cache: decided again, by its own policy.
        let (decided, hit) = new
            .get_or_decide::<()>(&r, || {
                Ok(Cached {
                    allowed: false,
                    reason: None,
                })
            })
            .unwrap();
        assert!(!hit && !decided.allowed);
        let (again, hit) = new.get_or_decide::<()>(&r, || panic!("kept")).unwrap();
        assert!(hit && !again.allowed);
        let (old_again, _) = old.get_or_decide::<()>(&r, || panic!("kept")).unwrap();
        assert!(old_again.allowed);
    }

    #[test]
    fn keys_that_share_a_place_in_the_front_keep_their_own_decisions() {
        let cache = DecisionCache::new(KeyPlan::new(&paths(&[&["request", "path"]])), 4096);
        let paths: Vec<String> = (0..FRONT_ENTRIES * 8).map(|i| format!("/{i}")).collect();
        for round in 0..3 {
            for path in &paths {
                let r = request("spiffe://example.org/a", path);
                let (decision, hit) = cache.get_or_decide(&r, || allowed(path)).unwrap();
                assert_eq!(hit, round > 0, "{path} in round {round}");
                assert_eq!(decision.reason.as_deref(), Some(path.as_str()));
            }
        }
    }

    #[test]
    fn a_front_keeps_no_key_longer_than_its_bound() {
        let cache = DecisionCache::new(KeyPlan::new(&paths(&[&["request", "path"]])), 16);
        let long = format!("/{}", "a".repeat(FRONT_KEY_MAX));
        let r = request("spiffe://example.org/a", &long);
        for _ in 0..2 {
            cache.get_or_decide(&r, || allowed("long")).unwrap();
        }
        cache.entries.clear();
        let mut decided = false;
        cache
            .get_or_decide(&r, || {
                decided = true;
                allowed("long")
            })
            .unwrap();
        assert!(decided, "a key over the bound was answered from the front");
    }
}

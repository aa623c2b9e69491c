//! The signed identity chain on a three-hop path A → B → C → S: S verifying C's header
//! (uncached and from its cache), and C signing its token for S on top of B's chain (uncached
//! and from its cache).
//!
//! Run with: cargo bench -p ligand-runtime --bench chain

#![allow(missing_docs, reason = "criterion_group! generates undocumented items")]

use std::time::SystemTime;

use criterion::{Criterion, criterion_group, criterion_main};
use ligand_runtime::testkit::{TestCa, signed_chain, verified_peer};
use ligand_runtime::tls::IdentityState;
use ligand_runtime::{ChainSigner, ChainVerifier, SpiffeId};

fn id(s: &str) -> SpiffeId {
    SpiffeId::new(s).unwrap_or_else(|e| panic!("{e}"))
}

fn bench(c: &mut Criterion) {
    let ca = TestCa::new("example.org");
    let hop = |s: &str| {
        IdentityState::new(&ca.context(ca.svid(s)), None).unwrap_or_else(|e| panic!("{e}"))
    };
    let (a, b, cc, s) = (
        hop("spiffe://example.org/service/a"),
        hop("spiffe://example.org/service/b"),
        hop("spiffe://example.org/service/c"),
        hop("spiffe://example.org/service/s"),
    );
    let now = SystemTime::now();
    let (c_peer, s_id) = (verified_peer(&cc), s.spiffe_id());
    let header = signed_chain(&[&a, &b, &cc], &s_id, now).unwrap_or_else(|e| panic!("{e}"));
    println!("three-hop header: {} bytes", header.len());

    let uncached = ChainVerifier::with_capacity(0);
    c.bench_function("chain/verify/3-hop/cold", |bench| {
        bench.iter(|| uncached.verify(&s, &header, &c_peer, now))
    });
    let cached = ChainVerifier::new();
    c.bench_function("chain/verify/3-hop/cached", |bench| {
        bench.iter(|| cached.verify(&s, &header, &c_peer, now))
    });

    // C's upstream: what B sent it, verified.
    let to_c = signed_chain(&[&a, &b], &cc.spiffe_id(), now).unwrap_or_else(|e| panic!("{e}"));
    let upstream = ChainVerifier::new()
        .verify(&cc, &to_c, &verified_peer(&b), now)
        .unwrap_or_else(|e| panic!("{e}"));
    let audience = id("spiffe://example.org/service/s");
    let uncached = ChainSigner::new().with_capacity(0);
    c.bench_function("chain/sign/3-hop/cold", |bench| {
        bench.iter(|| uncached.header(&cc, Some(&upstream), &audience, now))
    });
    let cached = ChainSigner::new();
    c.bench_function("chain/sign/3-hop/cached", |bench| {
        bench.iter(|| cached.header(&cc, Some(&upstream), &audience, now))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);

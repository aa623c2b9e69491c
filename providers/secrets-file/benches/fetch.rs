//! The cost of a cold fetch from the file provider, and of a read served by the framework's
//! secrets cache in front of it.
#![allow(missing_docs, reason = "criterion generates the bench entry points")]
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "benchmark setup")]

use std::future::Future;
use std::hint::black_box;
use std::os::unix::fs::PermissionsExt;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use criterion::{Criterion, criterion_group, criterion_main};
use ligand_runtime::testkit::{AllowList, FakeIdentity, TestCa};
use ligand_runtime::{Config, Secrets, init_trust_boundary};
use ligand_secrets_file::FileSecrets;

const NAME: &str = "secret/data/accounts/db";

fn write_secret(root: &std::path::Path) {
    let dir = root.join(NAME);
    std::fs::create_dir_all(&dir).unwrap();
    for (key, value) in [
        ("username", "app"),
        ("password", "correct horse battery staple"),
        ("host", "db.internal:5432"),
    ] {
        let path = dir.join(key);
        std::fs::write(&path, value).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
    }
}

fn fetch(c: &mut Criterion) {
    // A current-thread runtime: `block_on` costs least there, so the figures are the
    // provider's and the cache's, not the runtime's hand-off between threads.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let root = tempfile::tempdir().unwrap();
    write_secret(root.path());

    let provider = FileSecrets::new(root.path()).unwrap();
    c.bench_function("file provider cold get (directory, 3 keys)", |b| {
        b.iter(|| runtime.block_on(provider.get(black_box(NAME))).unwrap())
    });

    let ca = TestCa::new("example.org");
    let identity = FakeIdentity::new(ca.context(ca.svid("spiffe://example.org/service/bench")));
    let server = runtime
        .block_on(init_trust_boundary(
            Config::builder()
                .identity(identity)
                .policy(AllowList::new())
                .secrets(FileSecrets::new(root.path()).unwrap())
                .build(),
        ))
        .unwrap();
    runtime.block_on(server.secret_bytes(NAME)).unwrap();
    c.bench_function("secrets cache hit (server.secret_bytes)", |b| {
        b.iter(|| {
            runtime
                .block_on(server.secret_bytes(black_box(NAME)))
                .unwrap()
        })
    });
    // The same read polled once by hand: a hit completes on its first poll, so this is the
    // cache's own cost, without the executor's.
    {
        let _context = runtime.enter();
        let mut cx = Context::from_waker(Waker::noop());
        c.bench_function("secrets cache hit (polled directly)", |b| {
            b.iter(|| {
                let read = pin!(server.secret_bytes(black_box(NAME)));
                match read.poll(&mut cx) {
                    Poll::Ready(value) => value.unwrap(),
                    Poll::Pending => panic!("a cache hit completes on its first poll"),
                }
            })
        });
    }

    // What `block_on` itself costs, to read the figure above against.
    c.bench_function("baseline: block_on of a ready future", |b| {
        b.iter(|| runtime.block_on(async { black_box(1) }))
    });
    runtime.block_on(server.close());
}

criterion_group!(benches, fetch);
criterion_main!(benches);

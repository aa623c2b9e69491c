//! Building and signing bundles from a policy repository, and the revision hash alone.
#![allow(clippy::unwrap_used, missing_docs, reason = "benchmark")]

use criterion::{Criterion, criterion_group, criterion_main};
use ligand_bundle_server::{BundleStore, revision};
use ligand_opa_bundle::{BundleFile, SigningKey};

fn repo(services: usize, files_per_service: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let write = |path: String, body: String| {
        let path = dir.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, body).unwrap();
    };
    write(
        "lib/ligand/lib/util.rego".into(),
        "package ligand.lib\n\nis_admin(p) if p == \"admin\"\n".into(),
    );
    for s in 0..services {
        for f in 0..files_per_service {
            write(
                format!("services/svc{s}/ligand/authz/rule{f}.rego"),
                format!("package ligand.authz\n\nallow if input.action.name == \"a{f}\"\n"),
            );
        }
        write(
            format!("services/svc{s}/ligand/authz/data.json"),
            format!(r#"{{"service": "svc{s}", "limits": {{"rps": 10}}}}"#),
        );
    }
    dir
}

fn key() -> SigningKey {
    let pair = rcgen::KeyPair::generate().unwrap();
    SigningKey::from_pem("bench", "ES256", pair.serialize_pem().as_bytes()).unwrap()
}

fn benches(c: &mut Criterion) {
    let dir = repo(20, 10);
    c.bench_function("open: build and sign 20 bundles of 12 files", |b| {
        b.iter(|| BundleStore::open(dir.path(), key(), None).unwrap());
    });
    let store = BundleStore::open(dir.path(), key(), None).unwrap();
    c.bench_function("rescan: 20 unchanged bundles", |b| {
        b.iter(|| store.rescan().unwrap());
    });
    let files: Vec<BundleFile> = (0..100)
        .map(|i| BundleFile::new(format!("ligand/authz/r{i}.rego"), vec![b'x'; 2048]))
        .collect();
    c.bench_function("revision: 100 files of 2 KiB", |b| {
        b.iter(|| revision(&files));
    });
}

criterion_group!(build, benches);
criterion_main!(build);

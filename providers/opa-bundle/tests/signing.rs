//! Signing and verification, every failure mode, and the reader's defences.
#![allow(clippy::unwrap_used, reason = "tests")]

use ligand_opa_bundle::{
    Bundle, BundleError, BundleFile, Limits, SignatureError, Signatures, SigningKey,
    VerificationKey, Verifier,
};
use proptest::prelude::*;

fn bundle() -> Bundle {
    Bundle::new(vec![
        BundleFile::new(
            "ligand/authz/policy.rego",
            "package ligand.authz\n\ndefault allow := false\n",
        ),
        BundleFile::new(
            "ligand/authz/data.json",
            r#"{"admins": ["alice"], "limits": {"rps": 10}}"#,
        ),
    ])
    .with_revision("rev-1")
}

struct Keys {
    signing: SigningKey,
    verifier: Verifier,
}

fn es256(key_id: &str) -> Keys {
    let pair = rcgen::KeyPair::generate().unwrap();
    Keys {
        signing: SigningKey::from_pem(key_id, "ES256", pair.serialize_pem().as_bytes()).unwrap(),
        verifier: Verifier::new().key(
            key_id,
            VerificationKey::from_pem("ES256", pair.public_key_pem().as_bytes()).unwrap(),
        ),
    }
}

fn signed(keys: &Keys, bundle: Bundle) -> Bundle {
    let signatures = keys.signing.sign(&bundle, None).unwrap();
    bundle.with_signatures(signatures)
}

/// Round-trips through the archive format, as a bundle travels.
fn transported(bundle: &Bundle) -> Bundle {
    Bundle::from_tar_gz(&bundle.to_tar_gz().unwrap(), &Limits::default()).unwrap()
}

#[test]
fn signed_bundle_verifies_after_transport() {
    let keys = es256("bundle-key");
    let received = transported(&signed(&keys, bundle()));
    let payload = keys.verifier.verify(&received).unwrap();
    let names: Vec<&str> = payload.files.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        names,
        [
            ".manifest",
            "ligand/authz/data.json",
            "ligand/authz/policy.rego"
        ]
    );
    assert_eq!(received.revision(), Some("rev-1"));
}

#[test]
fn es384_keys_work_too() {
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
    let signing = SigningKey::from_pem("p384", "ES384", pair.serialize_pem().as_bytes()).unwrap();
    let verifier = Verifier::new().key(
        "p384",
        VerificationKey::from_pem("ES384", pair.public_key_pem().as_bytes()).unwrap(),
    );
    let b = bundle();
    let s = signing.sign(&b, None).unwrap();
    verifier
        .verify(&transported(&b.with_signatures(s)))
        .unwrap();
    // A key for one algorithm does not verify a signature made with another.
    let p256 = es256("p384");
    let foreign = transported(&signed(&es256("x"), bundle()));
    assert!(p256.verifier.verify(&foreign).is_err());
}

#[test]
fn data_signature_is_independent_of_whitespace_and_key_order() {
    let keys = es256("k");
    let original = signed(&keys, bundle());
    let reformatted = Bundle::new(vec![
        BundleFile::new(
            "ligand/authz/policy.rego",
            "package ligand.authz\n\ndefault allow := false\n",
        ),
        BundleFile::new(
            "ligand/authz/data.json",
            "{\n  \"limits\": {\"rps\": 10},\n  \"admins\": [\"alice\"]\n}\n",
        ),
    ])
    .with_revision("rev-1")
    .with_signatures(original.signatures().unwrap().clone());
    keys.verifier.verify(&reformatted).unwrap();
}

#[test]
fn unsigned_bundle_is_refused() {
    assert_eq!(
        es256("k").verifier.verify(&bundle()),
        Err(SignatureError::Unsigned)
    );
}

#[test]
fn tampered_policy_is_refused() {
    let keys = es256("k");
    let good = signed(&keys, bundle());
    let tampered = Bundle::new(vec![
        BundleFile::new(
            "ligand/authz/policy.rego",
            "package ligand.authz\n\ndefault allow := true\n",
        ),
        BundleFile::new(
            "ligand/authz/data.json",
            r#"{"admins": ["alice"], "limits": {"rps": 10}}"#,
        ),
    ])
    .with_revision("rev-1")
    .with_signatures(good.signatures().unwrap().clone());
    assert_eq!(
        keys.verifier.verify(&tampered),
        Err(SignatureError::DigestMismatch(
            "ligand/authz/policy.rego".into()
        ))
    );
}

#[test]
fn tampered_data_and_manifest_are_refused() {
    let keys = es256("k");
    let sigs = signed(&keys, bundle()).signatures().unwrap().clone();
    let data = Bundle::new(vec![
        BundleFile::new(
            "ligand/authz/policy.rego",
            "package ligand.authz\n\ndefault allow := false\n",
        ),
        BundleFile::new(
            "ligand/authz/data.json",
            r#"{"admins": ["alice", "mallory"], "limits": {"rps": 10}}"#,
        ),
    ])
    .with_revision("rev-1")
    .with_signatures(sigs.clone());
    assert_eq!(
        keys.verifier.verify(&data),
        Err(SignatureError::DigestMismatch(
            "ligand/authz/data.json".into()
        ))
    );
    let manifest = bundle().with_revision("rev-0").with_signatures(sigs);
    assert_eq!(
        keys.verifier.verify(&manifest),
        Err(SignatureError::DigestMismatch(".manifest".into()))
    );
}

#[test]
fn added_and_removed_files_are_refused() {
    let keys = es256("k");
    let sigs = signed(&keys, bundle()).signatures().unwrap().clone();
    let mut files = bundle().files().to_vec();
    files.push(BundleFile::new(
        "ligand/authz/backdoor.rego",
        "package ligand.authz\n\nallow := true\n",
    ));
    let added = Bundle::new(files)
        .with_revision("rev-1")
        .with_signatures(sigs.clone());
    assert_eq!(
        keys.verifier.verify(&added),
        Err(SignatureError::FileNotSigned(
            "ligand/authz/backdoor.rego".into()
        ))
    );
    let removed = Bundle::new(bundle().files()[..1].to_vec())
        .with_revision("rev-1")
        .with_signatures(sigs);
    assert_eq!(
        keys.verifier.verify(&removed),
        Err(SignatureError::MissingFile("ligand/authz/data.json".into()))
    );
}

#[test]
fn wrong_key_unknown_key_and_no_key_are_refused() {
    let signer = es256("k");
    let other = es256("k");
    let b = signed(&signer, bundle());
    assert!(matches!(
        other.verifier.verify(&b),
        Err(SignatureError::BadSignature { .. })
    ));
    let unknown = es256("someone-else");
    assert_eq!(
        unknown.verifier.verify(&b),
        Err(SignatureError::UnknownKey("k".into()))
    );
    // A configured key ID takes precedence over the one the signature names.
    let pinned = es256("k").verifier.key_id("pinned");
    assert_eq!(
        pinned.verify(&b),
        Err(SignatureError::UnknownKey("pinned".into()))
    );
}

#[test]
fn scope_must_match() {
    let keys = es256("k");
    let b = bundle();
    let sigs = keys.signing.sign(&b, Some("write")).unwrap();
    let b = b.with_signatures(sigs);
    assert_eq!(
        keys.verifier.verify(&b),
        Err(SignatureError::ScopeMismatch {
            expected: String::new(),
            actual: "write".into()
        })
    );
    keys.verifier.clone().scope("write").verify(&b).unwrap();
}

#[test]
fn signature_count_plugin_and_garbage_are_refused() {
    let keys = es256("k");
    let one = signed(&keys, bundle()).signatures().unwrap().signatures[0].clone();
    let two = bundle().with_signatures(Signatures {
        signatures: vec![one.clone(), one.clone()],
        plugin: None,
    });
    assert_eq!(
        keys.verifier.verify(&two),
        Err(SignatureError::SignatureCount(2))
    );
    let none = bundle().with_signatures(Signatures {
        signatures: vec![],
        plugin: None,
    });
    assert_eq!(
        keys.verifier.verify(&none),
        Err(SignatureError::SignatureCount(0))
    );
    let plugin = bundle().with_signatures(Signatures {
        signatures: vec![one],
        plugin: Some("custom".into()),
    });
    assert_eq!(
        keys.verifier.verify(&plugin),
        Err(SignatureError::Plugin("custom".into()))
    );
    let garbage = bundle().with_signatures(Signatures {
        signatures: vec!["not.a.jwt".into()],
        plugin: None,
    });
    assert!(matches!(
        keys.verifier.verify(&garbage),
        Err(SignatureError::Malformed(_))
    ));
}

#[test]
fn shared_secret_algorithms_are_not_accepted() {
    assert!(matches!(
        VerificationKey::from_pem("HS256", b"secret"),
        Err(SignatureError::Key(_))
    ));
    assert!(matches!(
        SigningKey::from_pem("k", "none", b""),
        Err(SignatureError::Key(_))
    ));
}

#[test]
fn reader_refuses_unsafe_archives() {
    let tar_gz = |path: &str, kind: tar::EntryType| {
        let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
            Vec::new(),
            flate2::Compression::fast(),
        ));
        let mut header = tar::Header::new_gnu();
        header.set_size(2);
        header.set_entry_type(kind);
        header.set_mode(0o644);
        // Write the raw name so that `..` is stored as given.
        header.as_gnu_mut().unwrap().name[..path.len()].copy_from_slice(path.as_bytes());
        header.set_cksum();
        builder.append(&header, &b"{}"[..]).unwrap();
        builder.into_inner().unwrap().finish().unwrap()
    };
    let limits = Limits::default();
    assert!(matches!(
        Bundle::from_tar_gz(
            &tar_gz("../etc/data.json", tar::EntryType::Regular),
            &limits
        ),
        Err(BundleError::UnsafePath { .. })
    ));
    assert!(matches!(
        Bundle::from_tar_gz(&tar_gz("a/link", tar::EntryType::Symlink), &limits),
        Err(BundleError::NotAFile { .. })
    ));
    let small = Limits {
        max_file_bytes: 1,
        ..Limits::default()
    };
    assert!(matches!(
        Bundle::from_tar_gz(&tar_gz("data.json", tar::EntryType::Regular), &small),
        Err(BundleError::TooLarge { .. })
    ));
    assert!(matches!(
        Bundle::from_tar_gz(b"not gzip", &limits),
        Err(BundleError::Archive(_))
    ));
}

#[test]
fn data_documents_are_placed_and_conflicts_refused() {
    let b = Bundle::new(vec![
        BundleFile::new("data.json", r#"{"top": 1}"#),
        BundleFile::new("a/b/data.json", r#"{"c": true}"#),
        BundleFile::new("list/data.json", r#"[1, 2]"#),
    ]);
    let data = b.data().unwrap();
    assert_eq!(data["top"], 1);
    assert_eq!(data["a"]["b"]["c"], true);
    assert_eq!(data["list"][1], 2);
    let clash = Bundle::new(vec![
        BundleFile::new("data.json", r#"{"a": {"b": 1}}"#),
        BundleFile::new("a/data.json", r#"{"b": 2}"#),
    ]);
    assert!(matches!(
        clash.data(),
        Err(BundleError::DataConflict { .. })
    ));
    let bad = Bundle::new(vec![BundleFile::new("x/data.json", "{oops")]);
    assert!(matches!(bad.data(), Err(BundleError::Json { .. })));
}

proptest! {
    #[test]
    fn reader_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let _ = Bundle::from_tar_gz(&bytes, &Limits::default());
    }

    #[test]
    fn any_single_byte_change_to_a_signed_file_is_detected(at in 0usize..200, flip in 1u8..=255) {
        let keys = es256("k");
        let good = signed(&keys, bundle());
        let mut files = good.files().to_vec();
        let policy = &mut files[0].bytes;
        let i = at % policy.len();
        policy[i] ^= flip;
        let tampered = Bundle::new(files).with_revision("rev-1").with_signatures(good.signatures().unwrap().clone());
        prop_assert!(keys.verifier.verify(&tampered).is_err());
    }
}

#[test]
fn corrupted_gzip_is_an_error_not_altered_content() {
    let archive = bundle().to_tar_gz().unwrap();
    // Flip one byte of the compressed data (after the 10-byte gzip header, before the trailer).
    let mut corrupted = archive.clone();
    let at = 10 + (archive.len() - 18) / 2;
    corrupted[at] ^= 0x01;
    match Bundle::from_tar_gz(&corrupted, &Limits::default()) {
        Err(_) => {}
        Ok(read) => assert_eq!(
            read,
            Bundle::from_tar_gz(&archive, &Limits::default()).unwrap(),
            "altered content"
        ),
    }
    // A wrong CRC in the trailer alone is caught.
    let mut bad_crc = archive.clone();
    let crc_at = archive.len() - 8;
    bad_crc[crc_at] ^= 0xff;
    assert!(matches!(
        Bundle::from_tar_gz(&bad_crc, &Limits::default()),
        Err(BundleError::Archive(_))
    ));
}

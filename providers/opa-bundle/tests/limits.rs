//! Every byte an archive decompresses to is bounded, including what the tar reader reads into
//! memory on its own (PAX extended headers, GNU long names and links) before any entry, and
//! so before any signature check, is seen.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use flate2::{Compress, Compression, Crc, FlushCompress};
use ligand_opa_bundle::{Bundle, BundleError, BundleFile, Limit, Limits};

const MIB: usize = 1 << 20;

/// A 512-byte tar header block for `name`, of type `kind`, announcing `size` bytes.
fn header(name: &str, kind: tar::EntryType, size: u64) -> Vec<u8> {
    let mut header = tar::Header::new_gnu();
    header.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name.as_bytes());
    header.set_mode(0o644);
    header.set_size(size);
    header.set_entry_type(kind);
    header.set_cksum();
    header.as_bytes().to_vec()
}

/// `bytes` as raw deflate blocks that end on a byte boundary, not final and referring to no
/// earlier data, so that they can be repeated and concatenated.
fn deflate_chunk(bytes: &[u8]) -> Vec<u8> {
    let mut compress = Compress::new(Compression::best(), false);
    let mut out = Vec::with_capacity(bytes.len() + 1024);
    compress
        .compress_vec(bytes, &mut out, FlushCompress::Full)
        .unwrap();
    assert_eq!(compress.total_in(), bytes.len() as u64);
    out
}

/// A well-formed gzipped tar whose first entry, of type `kind`, holds `mib` MiB of `a`s,
/// followed by an empty file and the end of the archive, built without ever holding the
/// decompressed bytes: the same compressed megabyte repeated.
fn giant_entry(kind: tar::EntryType, mib: usize) -> Vec<u8> {
    let megabyte = vec![b'a'; MIB];
    let head = header("././@LongLink", kind, (mib * MIB) as u64);
    let mut tail = header("data.json", tar::EntryType::Regular, 0);
    tail.extend_from_slice(&[0; 1024]);

    let mut gz = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    gz.extend(deflate_chunk(&head));
    let chunk = deflate_chunk(&megabyte);
    for _ in 0..mib {
        gz.extend_from_slice(&chunk);
    }
    gz.extend(deflate_chunk(&tail));
    // A final, empty block with fixed codes.
    gz.extend_from_slice(&[0x03, 0x00]);

    let mut crc = Crc::new();
    crc.update(&head);
    let mut chunk_crc = Crc::new();
    chunk_crc.update(&megabyte);
    for _ in 0..mib {
        crc.combine(&chunk_crc);
    }
    let mut tail_crc = Crc::new();
    tail_crc.update(&tail);
    crc.combine(&tail_crc);
    gz.extend_from_slice(&crc.sum().to_le_bytes());
    gz.extend_from_slice(&crc.amount().to_le_bytes());
    gz
}

/// The peak resident set size of this process, in bytes.
#[cfg(target_os = "linux")]
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

#[test]
fn the_crafted_archive_is_well_formed() {
    // Small enough to read in full: the tar reader takes the long name, then the file.
    let archive = giant_entry(tar::EntryType::GNULongName, 1);
    let roomy = Limits {
        max_header_bytes: 2 << 20,
        ..Limits::default()
    };
    let bundle = Bundle::from_tar_gz(&archive, &roomy).unwrap();
    assert_eq!(bundle.files().len(), 1);
    assert!(bundle.files()[0].path.starts_with("aaaa"));
}

#[test]
fn a_huge_long_name_or_pax_header_is_refused_without_reading_it() {
    for kind in [
        tar::EntryType::GNULongName,
        tar::EntryType::GNULongLink,
        tar::EntryType::XHeader,
    ] {
        // 256 MiB of extension data, about 1 MiB compressed.
        let archive = giant_entry(kind, 256);
        #[cfg(target_os = "linux")]
        let before = peak_rss();
        let result = Bundle::from_tar_gz(&archive, &Limits::default());
        #[cfg(target_os = "linux")]
        {
            let grown = peak_rss().saturating_sub(before);
            assert!(
                grown < 32 << 20,
                "{kind:?}: reading grew the peak RSS by {grown} bytes"
            );
        }
        let error = result.unwrap_err();
        assert!(
            matches!(
                error,
                BundleError::TooLarge {
                    limit: Limit::HeaderBytes,
                    max: 65536,
                    path: None,
                    ..
                }
            ),
            "{kind:?}: {error:?}"
        );
    }
}

#[test]
fn headers_and_padding_count_toward_the_total() {
    // Twenty empty files: no content, ten kilobytes of headers.
    let files: Vec<BundleFile> = (0..20)
        .map(|i| BundleFile::new(format!("f{i}.rego"), ""))
        .collect();
    let archive = Bundle::new(files).to_tar_gz().unwrap();
    let tight = Limits {
        max_total_bytes: 4096,
        ..Limits::default()
    };
    let error = Bundle::from_tar_gz(&archive, &tight).unwrap_err();
    assert!(
        matches!(
            error,
            BundleError::TooLarge {
                limit: Limit::TotalBytes,
                max: 4096,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(Bundle::from_tar_gz(&archive, &Limits::default()).is_ok());
}

#[test]
fn bytes_after_the_end_of_the_archive_count_toward_the_total() {
    let mut tar = header("data.json", tar::EntryType::Regular, 2);
    tar.extend_from_slice(b"{}");
    tar.resize(1024, 0);
    tar.extend_from_slice(&[0; 1024]);
    // A megabyte of zeros after the end-of-archive marker, inside the gzip stream.
    tar.resize(tar.len() + MIB, 0);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), Compression::fast());
    std::io::Write::write_all(&mut gz, &tar).unwrap();
    let archive = gz.finish().unwrap();
    let tight = Limits {
        max_total_bytes: 64 << 10,
        ..Limits::default()
    };
    let error = Bundle::from_tar_gz(&archive, &tight).unwrap_err();
    assert!(
        matches!(
            error,
            BundleError::TooLarge {
                limit: Limit::TotalBytes,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(Bundle::from_tar_gz(&archive, &Limits::default()).is_ok());
}

#[test]
fn directories_count_as_entries() {
    let mut tar = Vec::new();
    for i in 0..5 {
        tar.extend(header(&format!("d{i}/"), tar::EntryType::Directory, 0));
    }
    tar.extend_from_slice(&[0; 1024]);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), Compression::fast());
    std::io::Write::write_all(&mut gz, &tar).unwrap();
    let archive = gz.finish().unwrap();
    let few = Limits {
        max_files: 3,
        ..Limits::default()
    };
    let error = Bundle::from_tar_gz(&archive, &few).unwrap_err();
    assert!(
        matches!(
            error,
            BundleError::TooLarge {
                limit: Limit::Entries,
                max: 3,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(Bundle::from_tar_gz(&archive, &Limits::default()).is_ok());
}

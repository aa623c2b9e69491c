//! Reading one secret from disk in either layout. Blocking; the provider runs it on the
//! blocking pool.
//!
//! Every buffer holding secret bytes is a [`Zeroizing`] one, sized up front so that no
//! reallocation leaves an unzeroized copy behind.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, open, openat, statat};
use rustix::io::Errno;

use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, Serializer};
use zeroize::Zeroizing;

use crate::error::FileSecretsError;
use crate::name;

/// The Kubernetes atomic-writer indirection: a symbolic link to the current snapshot directory.
const K8S_DATA: &str = "..data";

/// How files are read and checked.
#[derive(Debug, Clone)]
pub(crate) struct ReadOptions {
    pub(crate) trim_trailing_newline: bool,
    pub(crate) allow_wide_permissions: bool,
    pub(crate) max_file_bytes: u64,
}

/// Reads the secret `name` under `root` (already canonical): the directory layout as a JSON
/// object of key → string, or the `.json` document as it is.
pub(crate) fn read_secret(
    root: &Path,
    name: &str,
    options: &ReadOptions,
) -> Result<Zeroizing<Vec<u8>>, FileSecretsError> {
    name::validate(name)?;
    let io_error = |source| FileSecretsError::Io {
        name: name.to_owned(),
        source,
    };
    let dir = root.join(name);
    let document = root.join(format!("{name}.json"));
    let is_dir = exists(&dir, |m| m.is_dir()).map_err(io_error)?;
    let is_document = exists(&document, |m| m.is_file()).map_err(io_error)?;
    match (is_dir, is_document) {
        (true, true) => Err(FileSecretsError::Ambiguous {
            name: name.to_owned(),
        }),
        (true, false) => read_directory(root, name, &dir, options),
        (false, true) => read_document(root, name, &document, options),
        (false, false) => Err(FileSecretsError::NotFound {
            name: name.to_owned(),
        }),
    }
}

/// Whether `path` exists (following links) and satisfies `kind`; a missing path or a missing
/// directory along it is `false`, any other error is an error.
fn exists(path: &Path, kind: impl Fn(&fs::Metadata) -> bool) -> io::Result<bool> {
    match fs::metadata(path) {
        Ok(meta) => Ok(kind(&meta)),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
            ) =>
        {
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

/// Canonicalizes `path` and checks that it lies under `root`.
fn inside(root: &Path, name: &str, path: &Path) -> Result<PathBuf, FileSecretsError> {
    let canonical = fs::canonicalize(path).map_err(|source| FileSecretsError::Io {
        name: name.to_owned(),
        source,
    })?;
    if canonical.starts_with(root) {
        Ok(canonical)
    } else {
        Err(FileSecretsError::OutsideRoot {
            name: name.to_owned(),
        })
    }
}

fn read_directory(
    root: &Path,
    name: &str,
    dir: &Path,
    options: &ReadOptions,
) -> Result<Zeroizing<Vec<u8>>, FileSecretsError> {
    let io_error = |source| FileSecretsError::Io {
        name: name.to_owned(),
        source,
    };
    let dir = inside(root, name, dir)?;
    // A Kubernetes volume keeps each snapshot in a timestamped directory and swaps `..data`
    // to the new one atomically; reading through it sees one consistent snapshot.
    let data = match fs::symlink_metadata(dir.join(K8S_DATA)) {
        Ok(_) => inside(root, name, &dir.join(K8S_DATA))?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => dir,
        Err(e) => return Err(io_error(e)),
    };
    let mut values: BTreeMap<String, Zeroizing<Vec<u8>>> = BTreeMap::new();
    for entry in fs::read_dir(&data).map_err(io_error)? {
        let entry = entry.map_err(io_error)?;
        let Some(key) = entry.file_name().to_str().map(str::to_owned) else {
            return Err(FileSecretsError::KeyNotUtf8 {
                name: name.to_owned(),
            });
        };
        if key.starts_with('.') {
            continue;
        }
        let path = inside(root, name, &entry.path())?;
        // Skips subdirectories and the like; the file opened is checked again, on its handle.
        if !fs::metadata(&path).map_err(io_error)?.is_file() {
            continue;
        }
        let mut value = read_file(root, name, &key, &path, options)?;
        if options.trim_trailing_newline && value.last() == Some(&b'\n') {
            value.pop();
            if value.last() == Some(&b'\r') {
                value.pop();
            }
        }
        if std::str::from_utf8(&value).is_err() {
            return Err(FileSecretsError::NotUtf8 {
                name: name.to_owned(),
                key,
            });
        }
        values.insert(key, value);
    }
    encode_object(&values).map_err(io_error)
}

fn read_document(
    root: &Path,
    name: &str,
    document: &Path,
    options: &ReadOptions,
) -> Result<Zeroizing<Vec<u8>>, FileSecretsError> {
    let path = inside(root, name, document)?;
    let file = format!("{name}.json");
    let bytes = read_file(root, name, &file, &path, options)?;
    if serde_json::from_slice::<ObjectShape>(&bytes).is_err() {
        return Err(FileSecretsError::NotObject {
            name: name.to_owned(),
        });
    }
    // An exact-size copy: handing over the read buffer would shrink (reallocate) it later.
    Ok(Zeroizing::new(bytes.to_vec()))
}

/// Opens `path` (canonical, under `root`) without following links, checks the opened file
/// (a regular file, its mode and size: `fstat` on the handle, never the path again) and reads
/// it.
fn read_file(
    root: &Path,
    name: &str,
    file_label: &str,
    path: &Path,
    options: &ReadOptions,
) -> Result<Zeroizing<Vec<u8>>, FileSecretsError> {
    let io_error = |source| FileSecretsError::Io {
        name: name.to_owned(),
        source,
    };
    let mut file = open_beneath(root, path, name, file_label)?;
    let meta = file.metadata().map_err(io_error)?;
    if !meta.is_file() {
        return Err(FileSecretsError::NotAFile {
            name: name.to_owned(),
            file: file_label.to_owned(),
        });
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 && !options.allow_wide_permissions {
        return Err(FileSecretsError::WidePermissions {
            name: name.to_owned(),
            file: file_label.to_owned(),
            mode,
        });
    }
    let too_large = || FileSecretsError::TooLarge {
        name: name.to_owned(),
        file: file_label.to_owned(),
        limit: options.max_file_bytes,
    };
    if meta.len() > options.max_file_bytes {
        return Err(too_large());
    }
    let capacity = usize::try_from(meta.len()).map_err(|_| too_large())? + 1;
    let mut buffer = Zeroizing::new(Vec::with_capacity(capacity));
    (&mut file)
        .take(options.max_file_bytes + 1)
        .read_to_end(&mut buffer)
        .map_err(io_error)?;
    if buffer.len() as u64 > options.max_file_bytes {
        return Err(too_large());
    }
    Ok(buffer)
}

/// Directories on the way: opened only to open what they hold (`O_PATH` where there is one,
/// so a directory that may be searched but not listed still works).
#[cfg(any(target_os = "linux", target_os = "android"))]
const DIR_FLAGS: OFlags = OFlags::PATH
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);
#[cfg(not(any(target_os = "linux", target_os = "android")))]
const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

/// The file itself: never through a link, and without blocking on a FIFO or taking a
/// terminal, should one have been swapped in (the handle's type is checked next).
const FILE_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::NOFOLLOW)
    .union(OFlags::NONBLOCK)
    .union(OFlags::NOCTTY)
    .union(OFlags::CLOEXEC);

/// Opens `path`, which was canonical and under `root` when it was resolved, one component at
/// a time from `root`, each relative to the directory opened before it and none through a
/// symbolic link. A link swapped in anywhere below the root after the name was resolved
/// makes the open fail instead of leading elsewhere.
fn open_beneath(
    root: &Path,
    path: &Path,
    name: &str,
    file_label: &str,
) -> Result<File, FileSecretsError> {
    let outside = || FileSecretsError::OutsideRoot {
        name: name.to_owned(),
    };
    let relative = path.strip_prefix(root).map_err(|_| outside())?;
    let parts = relative
        .components()
        .map(|component| match component {
            Component::Normal(part) => Ok(part),
            _ => Err(outside()),
        })
        .collect::<Result<Vec<&OsStr>, _>>()?;
    let Some((file, dirs)) = parts.split_last() else {
        return Err(outside());
    };
    let refused = |dir: &OwnedFd, part: &OsStr, errno: Errno| {
        let is_link = statat(dir, part, AtFlags::SYMLINK_NOFOLLOW)
            .is_ok_and(|stat| FileType::from_raw_mode(stat.st_mode) == FileType::Symlink);
        if is_link {
            FileSecretsError::Symlink {
                name: name.to_owned(),
                file: file_label.to_owned(),
            }
        } else {
            FileSecretsError::Io {
                name: name.to_owned(),
                source: errno.into(),
            }
        }
    };
    // The root is configured and canonical; it is the one place links were followed to.
    let mut dir =
        open(root, DIR_FLAGS.difference(OFlags::NOFOLLOW), Mode::empty()).map_err(|errno| {
            FileSecretsError::Io {
                name: name.to_owned(),
                source: errno.into(),
            }
        })?;
    for part in dirs {
        dir = openat(&dir, *part, DIR_FLAGS, Mode::empty())
            .map_err(|errno| refused(&dir, part, errno))?;
    }
    let opened = openat(&dir, *file, FILE_FLAGS, Mode::empty())
        .map_err(|errno| refused(&dir, file, errno))?;
    Ok(File::from(opened))
}

// === JSON encoding of a directory secret ===

/// Key → value, where every value is already known to be UTF-8.
struct Object<'a>(&'a BTreeMap<String, Zeroizing<Vec<u8>>>);

impl Serialize for Object<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (key, value) in self.0 {
            let value = std::str::from_utf8(value).map_err(serde::ser::Error::custom)?;
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

/// Counts bytes, so the output buffer can be allocated once at its exact size.
struct Counter(usize);

impl Write for Counter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn encode_object(values: &BTreeMap<String, Zeroizing<Vec<u8>>>) -> io::Result<Zeroizing<Vec<u8>>> {
    let mut counter = Counter(0);
    serde_json::to_writer(&mut counter, &Object(values))?;
    let mut out = Zeroizing::new(Vec::with_capacity(counter.0));
    serde_json::to_writer(&mut *out, &Object(values))?;
    debug_assert_eq!(out.len(), out.capacity());
    Ok(out)
}

// === JSON document shape check ===

/// Accepts any JSON object without copying its content (keys and values are skipped).
struct ObjectShape;

impl<'de> Deserialize<'de> for ObjectShape {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ShapeVisitor;
        impl<'de> Visitor<'de> for ShapeVisitor {
            type Value = ObjectShape;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ObjectShape, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(ObjectShape)
            }
        }
        deserializer.deserialize_map(ShapeVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn shape_check_accepts_objects_only() {
        assert!(serde_json::from_slice::<ObjectShape>(br#"{"a":"b","c":{"d":[1]}}"#).is_ok());
        for bad in [&b"[]"[..], b"\"s\"", b"1", b"{", b"", b"{}x"] {
            assert!(serde_json::from_slice::<ObjectShape>(bad).is_err());
        }
    }

    #[test]
    fn encodes_an_exact_size_object() {
        let mut values = BTreeMap::new();
        values.insert(
            "password".to_owned(),
            Zeroizing::new(b"p\"w\n\x01".to_vec()),
        );
        values.insert("username".to_owned(), Zeroizing::new(b"app".to_vec()));
        let out = encode_object(&values).unwrap();
        assert_eq!(out.len(), out.capacity());
        let parsed: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(parsed["password"], "p\"w\n\u{1}");
        assert_eq!(parsed["username"], "app");
    }

    fn options() -> ReadOptions {
        ReadOptions {
            trim_trailing_newline: false,
            allow_wide_permissions: false,
            max_file_bytes: 1024,
        }
    }

    /// A canonical root with `target`, a 0600 file holding `secret`, and `dir/key`, another.
    fn root() -> (tempfile::TempDir, PathBuf) {
        let temp = tempfile::tempdir().unwrap();
        let root = fs::canonicalize(temp.path()).unwrap();
        for file in [root.join("target"), root.join("dir/key")] {
            fs::create_dir_all(file.parent().unwrap()).unwrap();
            fs::write(&file, b"secret").unwrap();
            fs::set_permissions(&file, fs::Permissions::from_mode(0o600)).unwrap();
        }
        (temp, root)
    }

    #[test]
    fn a_regular_file_under_the_root_is_read() {
        let (_temp, root) = root();
        for path in [root.join("target"), root.join("dir/key")] {
            let bytes = read_file(&root, "s", "key", &path, &options()).unwrap();
            assert_eq!(&bytes[..], b"secret");
        }
        // A path that does not lie under the root is not opened.
        assert!(matches!(
            read_file(
                &root.join("dir"),
                "s",
                "key",
                &root.join("target"),
                &options()
            ),
            Err(FileSecretsError::OutsideRoot { .. })
        ));
    }

    /// The name was resolved when the link was a file; by the time it is opened, it is a
    /// link. Opening through it would read whatever it points to, inside the root or not.
    #[test]
    fn a_link_found_when_opening_is_refused() {
        let (_temp, root) = root();
        std::os::unix::fs::symlink(root.join("target"), root.join("link")).unwrap();
        let error = read_file(&root, "s", "key", &root.join("link"), &options()).unwrap_err();
        assert!(
            matches!(&error, FileSecretsError::Symlink { name, file } if name == "s" && file == "key"),
            "{error:?}"
        );
        assert!(error.to_string().contains("symbolic link"), "{error}");
    }

    #[test]
    fn a_link_on_the_way_to_the_file_is_refused() {
        let (_temp, root) = root();
        std::os::unix::fs::symlink(root.join("dir"), root.join("linkdir")).unwrap();
        let error =
            read_file(&root, "s", "key", &root.join("linkdir/key"), &options()).unwrap_err();
        assert!(
            matches!(error, FileSecretsError::Symlink { .. }),
            "{error:?}"
        );
    }

    /// The file's type is checked on the opened handle: a FIFO swapped in for a key is
    /// neither waited on (the open does not block) nor read.
    #[test]
    fn the_opened_handle_is_checked_not_the_path() {
        let (_temp, root) = root();
        let fifo = root.join("fifo");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            FileType::Fifo,
            Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let (root_, fifo_) = (root.clone(), fifo.clone());
        std::thread::spawn(move || {
            let _ = tx.send(read_file(&root_, "s", "key", &fifo_, &options()));
        });
        let result = rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("opening a FIFO must not block");
        assert!(
            matches!(result, Err(FileSecretsError::NotAFile { .. })),
            "{result:?}"
        );
        // A directory is not read as a file either.
        assert!(matches!(
            read_file(&root, "s", "key", &root.join("dir"), &options()),
            Err(FileSecretsError::NotAFile { .. })
        ));
    }

    proptest! {
        /// Any UTF-8 keys and values round-trip through the encoder.
        #[test]
        fn encoding_round_trips(entries in proptest::collection::btree_map("\\PC{1,8}", "\\PC{0,16}", 0..6)) {
            let values: BTreeMap<String, Zeroizing<Vec<u8>>> = entries
                .iter()
                .map(|(k, v)| (k.clone(), Zeroizing::new(v.as_bytes().to_vec())))
                .collect();
            let out = encode_object(&values).unwrap();
            let parsed: BTreeMap<String, String> = serde_json::from_slice(&out).unwrap();
            prop_assert_eq!(parsed, entries);
        }

        /// The document check never panics and accepts exactly what parses as an object.
        #[test]
        fn shape_check_matches_serde(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let shape = serde_json::from_slice::<ObjectShape>(&bytes).is_ok();
            let object = serde_json::from_slice::<serde_json::Value>(&bytes)
                .is_ok_and(|v| v.is_object());
            prop_assert_eq!(shape, object);
        }
    }
}

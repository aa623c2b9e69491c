//! Secret names: relative paths of plain components, checked before any file is touched.

use crate::error::FileSecretsError;

/// The longest name accepted; longer ones are refused before the filesystem sees them.
pub(crate) const MAX_NAME_LEN: usize = 1024;

/// Checks that `name` is a relative path of plain components: no empty, `.` or `..`
/// component, no component starting with a dot (those are the layout's own files, such as
/// Kubernetes' `..data`), no leading `/`, no backslash and no NUL.
///
/// This is the first of two defences: the resolved path is also canonicalized and checked to
/// lie under the root, which catches symbolic links pointing outside.
pub(crate) fn validate(name: &str) -> Result<(), FileSecretsError> {
    let invalid = |reason| {
        Err(FileSecretsError::InvalidName {
            name: name.to_owned(),
            reason,
        })
    };
    if name.is_empty() {
        return invalid("the name is empty");
    }
    if name.len() > MAX_NAME_LEN {
        return invalid("the name is too long");
    }
    if name.starts_with('/') {
        return invalid("absolute paths are not allowed");
    }
    if name.contains('\0') {
        return invalid("NUL is not allowed");
    }
    if name.contains('\\') {
        return invalid("backslashes are not allowed");
    }
    for component in name.split('/') {
        if component.is_empty() {
            return invalid("empty path components are not allowed");
        }
        if component == ".." {
            return invalid("`..` is not allowed");
        }
        if component.starts_with('.') {
            return invalid("components starting with `.` are not allowed");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_plain_paths() {
        for name in ["db", "secret/data/accounts/db", "a-b_c.d/e f", "x.json"] {
            assert!(validate(name).is_ok(), "{name}");
        }
    }

    #[test]
    fn refuses_traversal_and_absolute_paths() {
        for name in [
            "",
            "/etc/passwd",
            "../etc",
            "a/../../b",
            "a/..",
            "a//b",
            "a/",
            "./a",
            "a/.hidden",
            "a/..data/key",
            "a\\..\\b",
            "a\0b",
        ] {
            assert!(
                matches!(validate(name), Err(FileSecretsError::InvalidName { .. })),
                "{name:?}"
            );
        }
    }

    proptest! {
        /// Whatever the input, an accepted name has no component that could leave its
        /// directory or reach a hidden layout file.
        #[test]
        fn accepted_names_stay_relative(name in "\\PC{0,64}") {
            if validate(&name).is_ok() {
                prop_assert!(!name.starts_with('/'));
                prop_assert!(!name.contains('\0') && !name.contains('\\'));
                for component in std::path::Path::new(&name).components() {
                    prop_assert!(matches!(component, std::path::Component::Normal(_)));
                }
                prop_assert!(name.split('/').all(|c| !c.is_empty() && !c.starts_with('.')));
            }
        }

        #[test]
        fn traversal_is_always_refused(prefix in "([a-z]{1,4}/){0,3}", suffix in "[a-z/]{0,8}") {
            let name = format!("{prefix}../{suffix}");
            prop_assert!(validate(&name).is_err());
        }
    }
}

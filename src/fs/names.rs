//! Which lakeFS keys can appear as file names.
//!
//! lakeFS keys are arbitrary strings up to 1024 bytes; `/` only suggests directories. A key segment that a POSIX
//! directory entry cannot carry is hidden and logged, never passed to the kernel: empty segments (`a//b`, and the
//! `dir/` marker objects some tools write), `.` and `..`, and names over 255 bytes. When a key is both an object and
//! a prefix (`a` and `a/b`), the directory is kept and the object hidden: the directory may hold any number of
//! objects, the object is one.

/// Longest file name the kernel accepts.
pub const NAME_MAX: usize = 255;

/// Longest lakeFS object key: a path whose key would be longer cannot exist (lookup is `ENOENT` without asking the
/// server) and cannot be created (`ENAMETOOLONG`), although it is shorter than the kernel's `PATH_MAX`.
pub const KEY_MAX: usize = 1024;

/// Why a key segment cannot be a file name, or `None` when it can.
pub fn invalid_name_reason(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("empty path segment")
    } else if name == "." || name == ".." {
        Some("'.' or '..' segment")
    } else if name.len() > NAME_MAX {
        Some("name longer than 255 bytes")
    } else if name.contains('/') || name.contains('\0') {
        Some("name contains '/' or NUL")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_impossible_names_are_rejected() {
        for ok in ["a", "a.txt", "...", "with space", &"x".repeat(255), "日本"] {
            assert_eq!(invalid_name_reason(ok), None, "{ok}");
        }
        for bad in ["", ".", "..", &"x".repeat(256), "a/b", "a\0"] {
            assert!(invalid_name_reason(bad).is_some(), "{bad}");
        }
    }

    proptest::proptest! {
        /// Exactly the names a directory entry can carry are accepted, for any input (long, multi-byte, dots).
        #[test]
        fn accepted_exactly_when_a_directory_entry_can_carry_it(name in proptest::prop_oneof![
            "\\PC{0,300}",
            "[./\\x00a]{0,4}",
            "[é]{120,130}",
        ]) {
            let posix = !name.is_empty()
                && name != "."
                && name != ".."
                && name.len() <= NAME_MAX
                && !name.contains('/')
                && !name.contains('\0');
            proptest::prop_assert_eq!(invalid_name_reason(&name).is_none(), posix, "{:?}", name);
        }
    }
}

//! Removing a secret from the process's command line, so `ps` and `/proc/PID/cmdline` stop showing it.
//!
//! DESIGN §1 lets `secret_access_key=` come as a mount option (that is how some fstab entries and `mount -o` pass
//! it), but every user on the machine can read a process's arguments. The kernel serves `/proc/PID/cmdline` from
//! the process's own memory, the argument area between `arg_start` and `arg_end` (fields 48 and 49 of
//! `/proc/self/stat`), so overwriting the secret's bytes there hides it from then on. The area cannot shrink
//! without privileges, so each byte of the secret becomes `*`.
//!
//! This narrows the exposure to the first milliseconds of the process; it cannot close it. The config file
//! (mode 0600) and the environment remain the ways that never expose the secret, and `--help` says so.
//!
//! Writing the area is sound: it is the initial stack's argument block, writable and owned by this process; Rust's
//! `std::env::args` copies from it on each call and nothing holds a reference into it. It runs while the process
//! is still single-threaded (before the runtime and the FUSE threads start).

use std::io;

/// Overwrites every occurrence of `secret` in this process's argument area with `*`. Returns how many
/// occurrences were hidden.
pub fn scrub_from_argv(secret: &str) -> io::Result<usize> {
    if secret.is_empty() {
        return Ok(0);
    }
    let (start, end) = argument_area()?;
    if end <= start {
        return Ok(0);
    }
    let len = end - start;
    // SAFETY: [start, end) is this process's argument area as the kernel reports it: mapped, writable, and not
    // aliased by any Rust reference (see the module docs). The slice lives only within this function.
    let area = unsafe { std::slice::from_raw_parts_mut(start as *mut u8, len) };
    Ok(hide_all(area, secret.as_bytes()))
}

/// Replaces each occurrence of `needle` in `haystack` with `*` bytes.
fn hide_all(haystack: &mut [u8], needle: &[u8]) -> usize {
    let mut hidden = 0;
    let mut at = 0;
    while at + needle.len() <= haystack.len() {
        if &haystack[at..at + needle.len()] == needle {
            haystack[at..at + needle.len()].fill(b'*');
            hidden += 1;
            at += needle.len();
        } else {
            at += 1;
        }
    }
    hidden
}

/// `arg_start` and `arg_end` from `/proc/self/stat`.
fn argument_area() -> io::Result<(usize, usize)> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    parse_argument_area(&stat).ok_or_else(|| io::Error::other("unexpected /proc/self/stat format"))
}

fn parse_argument_area(stat: &str) -> Option<(usize, usize)> {
    // Field 2 (the command name, in parentheses) may contain spaces: count fields after its closing parenthesis.
    let after_name = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // `fields[0]` is field 3 (state), so field N is `fields[N - 3]`.
    let start = fields.get(48 - 3)?.parse().ok()?;
    let end = fields.get(49 - 3)?.parse().ok()?;
    Some((start, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_occurrence_is_hidden() {
        let mut area = b"mount\0-o\0secret_access_key=S3CR3T,debug\0--secret-access-key\0S3CR3T\0".to_vec();
        assert_eq!(hide_all(&mut area, b"S3CR3T"), 2);
        assert_eq!(
            area,
            b"mount\0-o\0secret_access_key=******,debug\0--secret-access-key\0******\0".to_vec()
        );
        assert_eq!(hide_all(&mut area, b"absent"), 0);
    }

    #[test]
    fn stat_fields_are_found_after_a_name_with_spaces() {
        let mut stat = String::from("123 (a b) c) S");
        for field in 4..=52 {
            stat.push_str(&format!(" {}", field * 10));
        }
        assert_eq!(parse_argument_area(&stat), Some((480, 490)));
        assert_eq!(parse_argument_area("1 (x) S 2"), None);
    }

    #[test]
    fn this_process_has_an_argument_area() {
        let (start, end) = argument_area().unwrap();
        assert!(end > start);
        assert_eq!(scrub_from_argv("").unwrap(), 0);
    }
}

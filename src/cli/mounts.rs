//! Finding lakefs-fuse mounts from the outside: `/proc/self/mountinfo` names them (file system type
//! `fuse.lakefs` when fusermount3 mounted them, plain `fuse` with source `lakefs` when root mounted them
//! directly), and each mounted ref has a `.lakefs/` control directory whose `status.json` describes it and
//! the whole mount.
//!
//! The command line tools talk to a running mount only through its files, so they work with any mount, started
//! by hand, by mount(8) or by systemd. Awkward cases:
//! - `.lakefs/` is reachable by name but never listed, so finding a branch means probing `DIR/.lakefs/status.json`
//!   in each directory from PATH up to the mountpoint (never above it).
//! - A repository or whole-server mount has no `.lakefs/` at its root; its state is read through the first ref
//!   root below it, whose `status.json` describes the whole mount as well (see `src/fs/write/control.rs`).
//! - Mountpoints in mountinfo escape space, tab, newline and backslash as octal (`\040`).

use std::path::{Path, PathBuf};

use crate::fs::inode::CONTROL_DIR;
use crate::fs::write::control::{StatusReport, STATUS_FORMAT};

/// The file system type of lakefs-fuse mounts made through fusermount3 (`fuse.` + the subtype).
pub const FS_TYPE: &str = "fuse.lakefs";
/// The source (`fsname=`) every lakefs-fuse mount shows.
pub const FS_NAME: &str = "lakefs";

/// One line of `/proc/self/mountinfo`, the parts we use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    pub mountpoint: PathBuf,
    pub fs_type: String,
    pub source: String,
}

impl MountEntry {
    /// A mount made by root's mount(2) records no subtype: the type is `fuse` and the source ours.
    pub fn is_lakefs(&self) -> bool {
        self.fs_type == FS_TYPE || (self.fs_type == "fuse" && self.source == FS_NAME)
    }
}

/// Why a path does not lead to a mounted branch.
#[derive(Debug, thiserror::Error)]
pub enum LocateError {
    #[error("{path}: {source}")]
    Inaccessible {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0} is not inside a lakefs-fuse mount (no lakefs file system in /proc/self/mountinfo holds it)")]
    NotInMount(PathBuf),
    #[error(
        "{path} is inside the lakefs-fuse mount at {mountpoint} but not inside a ref: no .lakefs/ control \
         directory in it or above it; give a path below MOUNTPOINT/REPO/BRANCH"
    )]
    NotInRef { path: PathBuf, mountpoint: PathBuf },
    #[error("{path}: {message}")]
    BadStatus { path: PathBuf, message: String },
}

/// Parse mountinfo text (see proc(5)): field 5 is the mountpoint, the field after ` - ` the file system type.
pub fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let mountpoint = fields.get(4)?;
            let separator = fields.iter().position(|f| *f == "-")?;
            let fs_type = fields.get(separator + 1)?;
            let source = fields.get(separator + 2).copied().unwrap_or_default();
            Some(MountEntry {
                mountpoint: PathBuf::from(unescape_octal(mountpoint)),
                fs_type: (*fs_type).to_string(),
                source: unescape_octal(source),
            })
        })
        .collect()
}

/// Undo mountinfo's `\ooo` escapes.
fn unescape_octal(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match (bytes[i], octal) {
            (b'\\', Some(digits)) => {
                let value = digits.iter().fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
                out.push(u8::try_from(value).unwrap_or(b'?'));
                i += 4;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Every mount of this process's mount namespace.
pub fn read_mounts() -> std::io::Result<Vec<MountEntry>> {
    Ok(parse_mountinfo(&std::fs::read_to_string("/proc/self/mountinfo")?))
}

/// The mount that holds `path` (already canonical): the longest mountpoint that is a prefix of it.
pub fn containing_mount<'a>(mounts: &'a [MountEntry], path: &Path) -> Option<&'a MountEntry> {
    mounts
        .iter()
        .filter(|m| path.starts_with(&m.mountpoint))
        .max_by_key(|m| m.mountpoint.as_os_str().len())
}

fn canonical(path: &Path) -> Result<PathBuf, LocateError> {
    std::fs::canonicalize(path).map_err(|source| LocateError::Inaccessible {
        path: path.to_path_buf(),
        source,
    })
}

/// The lakefs-fuse mount holding `path`: its mountpoint.
pub fn lakefs_mount_of(path: &Path) -> Result<PathBuf, LocateError> {
    let path = canonical(path)?;
    let mounts = read_mounts().map_err(|source| LocateError::Inaccessible {
        path: "/proc/self/mountinfo".into(),
        source,
    })?;
    match containing_mount(&mounts, &path) {
        Some(mount) if mount.is_lakefs() => Ok(mount.mountpoint.clone()),
        _ => Err(LocateError::NotInMount(path)),
    }
}

/// `DIR/.lakefs/status.json`.
pub fn status_file(ref_root: &Path) -> PathBuf {
    ref_root.join(CONTROL_DIR).join("status.json")
}

/// The root of the mounted ref holding `path`: the nearest directory at or above it, not above its mountpoint,
/// with a `.lakefs/` control directory.
pub fn ref_root_of(path: &Path) -> Result<PathBuf, LocateError> {
    let mountpoint = lakefs_mount_of(path)?;
    let path = canonical(path)?;
    let start = if path.is_dir() {
        path.as_path()
    } else {
        path.parent().unwrap_or(&path)
    };
    start
        .ancestors()
        .take_while(|dir| dir.starts_with(&mountpoint))
        .find(|dir| status_file(dir).is_file())
        .map(Path::to_path_buf)
        .ok_or(LocateError::NotInRef { path, mountpoint })
}

/// Read and parse `ROOT/.lakefs/status.json`.
pub fn read_status(ref_root: &Path) -> Result<StatusReport, LocateError> {
    let path = status_file(ref_root);
    let bad = |message: String| LocateError::BadStatus {
        path: path.clone(),
        message,
    };
    let text = std::fs::read_to_string(&path).map_err(|e| bad(e.to_string()))?;
    let report: StatusReport = serde_json::from_str(&text).map_err(|e| bad(format!("not a status report: {e}")))?;
    if report.format != STATUS_FORMAT {
        return Err(bad(format!(
            "status format {} (this lakefs-fuse reads {STATUS_FORMAT}); use the lakefs-fuse that runs the mount",
            report.format
        )));
    }
    Ok(report)
}

/// Some ref root of the mount at `mountpoint`: the mount root itself for a ref mount, else the first branch
/// (of the first repository) listed below it.
pub fn any_ref_root(mountpoint: &Path) -> Option<PathBuf> {
    fn first_dir(dir: &Path) -> Option<PathBuf> {
        let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
            .ok()?
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| e.path())
            .collect();
        names.sort();
        names.into_iter().next()
    }
    if status_file(mountpoint).is_file() {
        return Some(mountpoint.to_path_buf());
    }
    let child = first_dir(mountpoint)?;
    if status_file(&child).is_file() {
        return Some(child);
    }
    first_dir(&child).filter(|grandchild| status_file(grandchild).is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
61 22 0:52 / /tmp/my\\040lake rw,nosuid,nodev,relatime shared:30 - fuse.lakefs lakefs rw,user_id=0,group_id=0
62 22 0:53 / /tmp/my\\040lake/inner rw shared:31 - tmpfs tmpfs rw
70 22 0:60 / /mnt/s3 rw - fuse.s3fs s3fs rw
43 27 0:40 / /mnt/as\\040root rw,nosuid,nodev,relatime - fuse lakefs rw,user_id=0,group_id=0
44 27 0:41 / /mnt/sshfs rw - fuse sshfs#host: rw
";

    #[test]
    fn mountinfo_lines_give_mountpoint_and_type() {
        let mounts = parse_mountinfo(MOUNTINFO);
        assert_eq!(mounts.len(), 6);
        assert_eq!(mounts[1].mountpoint, PathBuf::from("/tmp/my lake"));
        assert!(mounts[1].is_lakefs());
        assert!(!mounts[3].is_lakefs(), "other FUSE file systems are not ours");
        assert!(mounts[4].is_lakefs(), "root's direct mount has no subtype");
        assert_eq!(mounts[4].mountpoint, PathBuf::from("/mnt/as root"));
        assert!(!mounts[5].is_lakefs());
        assert!(parse_mountinfo("garbage\n\n1 2 3").is_empty());
    }

    #[test]
    fn the_innermost_mount_holds_a_path() {
        let mounts = parse_mountinfo(MOUNTINFO);
        let holder = |p: &str| containing_mount(&mounts, Path::new(p)).map(|m| m.fs_type.as_str());
        assert_eq!(holder("/tmp/my lake/repo/main/x.csv"), Some("fuse.lakefs"));
        assert_eq!(holder("/tmp/my lake/inner/x"), Some("tmpfs"));
        assert_eq!(
            holder("/tmp/my lakeside"),
            Some("ext4"),
            "a prefix of a name is not a parent"
        );
    }

    #[test]
    fn octal_escapes_are_undone() {
        assert_eq!(unescape_octal(r"a\040b\134c\011"), "a b\\c\t");
        assert_eq!(unescape_octal(r"trailing\04"), r"trailing\04");
        assert_eq!(unescape_octal(r"\999"), r"\999");
    }

    #[test]
    fn a_path_outside_every_lakefs_mount_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let err = ref_root_of(dir.path()).unwrap_err();
        assert!(matches!(err, LocateError::NotInMount(_)), "{err}");
        assert!(err.to_string().contains("not inside a lakefs-fuse mount"), "{err}");
        let err = ref_root_of(&dir.path().join("missing")).unwrap_err();
        assert!(matches!(err, LocateError::Inaccessible { .. }), "{err}");
    }
}

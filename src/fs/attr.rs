//! File attributes, as the core reports them (the adapter converts them to fuser's type).
//!
//! Objects: size = `size_bytes`; mtime = `::lakefs::client-mtime` when present and valid, else `mtime`;
//! mode/uid/gid from `::lakefs::posix-permissions` when present, else the mount's `file_mode`/`uid`/`gid`.
//! Directories and control entries use the mount's defaults.
//!
//! Special files (FIFOs, sockets, device nodes made with `mknod`) are empty objects whose recorded `Mode` carries
//! their file type (`S_IFIFO`, ...) and, for devices, an `Rdev` field: the type comes from the metadata, never
//! from the data. (The mount is `nodev`, so a stored device node can be listed and chmod-ed but not opened.)

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Deserialize;

use super::config::FsConfig;
use super::inode::InodeNo;
use crate::lakefs::{ObjectInfo, META_CLIENT_MTIME, META_POSIX_PERMISSIONS};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Directory,
    RegularFile,
    Symlink,
    Fifo,
    Socket,
    CharDevice,
    BlockDevice,
}

impl FileKind {
    /// The special file type a recorded `st_mode` names, if any.
    pub fn special_from_mode(mode: u32) -> Option<Self> {
        match mode & libc::S_IFMT {
            libc::S_IFIFO => Some(Self::Fifo),
            libc::S_IFSOCK => Some(Self::Socket),
            libc::S_IFCHR => Some(Self::CharDevice),
            libc::S_IFBLK => Some(Self::BlockDevice),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attr {
    pub ino: InodeNo,
    pub kind: FileKind,
    pub size: u64,
    pub mtime: SystemTime,
    /// Status change time: the mtime, except for directories whose attributes changed in this mount.
    pub ctime: SystemTime,
    /// Permission bits only (no file type).
    pub perm: u16,
    pub uid: u32,
    pub gid: u32,
    /// Device number of a device node; 0 otherwise.
    pub rdev: u32,
}

#[derive(Deserialize)]
struct PosixPermissions {
    #[serde(rename = "UID")]
    uid: Option<u32>,
    #[serde(rename = "GID")]
    gid: Option<u32>,
    #[serde(rename = "Mode")]
    mode: Option<u32>,
    #[serde(rename = "Rdev")]
    rdev: Option<u32>,
}

fn unix_seconds(seconds: i64) -> SystemTime {
    if seconds >= 0 {
        UNIX_EPOCH + Duration::from_secs(seconds.unsigned_abs())
    } else {
        UNIX_EPOCH
            .checked_sub(Duration::from_secs(seconds.unsigned_abs()))
            .unwrap_or(UNIX_EPOCH)
    }
}

/// The mtime an object shows: the client's own mtime when it recorded one.
pub fn object_mtime(object: &ObjectInfo) -> SystemTime {
    let client = object
        .metadata
        .get(META_CLIENT_MTIME)
        .and_then(|v| v.trim().parse::<i64>().ok());
    unix_seconds(client.unwrap_or(object.mtime))
}

pub fn directory_attr(ino: InodeNo, config: &FsConfig, mtime: SystemTime) -> Attr {
    Attr {
        ino,
        kind: FileKind::Directory,
        size: 0,
        mtime,
        ctime: mtime,
        perm: config.dir_mode,
        uid: config.uid,
        gid: config.gid,
        rdev: 0,
    }
}

pub fn object_attr(ino: InodeNo, kind: FileKind, object: &ObjectInfo, config: &FsConfig) -> Attr {
    let mtime = object_mtime(object);
    let mut attr = Attr {
        ino,
        kind,
        size: object.size,
        mtime,
        ctime: mtime,
        perm: if kind == FileKind::Symlink {
            0o777
        } else {
            config.file_mode
        },
        uid: config.uid,
        gid: config.gid,
        rdev: 0,
    };
    if let Some(posix) = object
        .metadata
        .get(META_POSIX_PERMISSIONS)
        .and_then(|v| serde_json::from_str::<PosixPermissions>(v).ok())
    {
        if let Some(mode) = posix.mode.filter(|_| kind == FileKind::RegularFile) {
            attr.perm = (mode & 0o7777) as u16;
            if let Some(special) = FileKind::special_from_mode(mode) {
                attr.kind = special;
                attr.rdev = posix.rdev.unwrap_or(0);
            }
        }
        attr.uid = posix.uid.unwrap_or(attr.uid);
        attr.gid = posix.gid.unwrap_or(attr.gid);
    }
    if kind == FileKind::Symlink {
        attr.size = object
            .metadata
            .get(crate::lakefs::META_SYMLINK_TARGET)
            .map_or(0, |t| t.len() as u64);
    }
    attr
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn object(metadata: &[(&str, &str)]) -> ObjectInfo {
        ObjectInfo {
            path: "f".into(),
            size: 10,
            mtime: 1000,
            checksum: "c".into(),
            metadata: metadata
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
        }
    }

    #[test]
    fn client_mtime_wins_over_the_server_mtime() {
        assert_eq!(object_mtime(&object(&[])), UNIX_EPOCH + Duration::from_secs(1000));
        assert_eq!(
            object_mtime(&object(&[(META_CLIENT_MTIME, "42")])),
            UNIX_EPOCH + Duration::from_secs(42)
        );
        assert_eq!(
            object_mtime(&object(&[(META_CLIENT_MTIME, "junk")])),
            UNIX_EPOCH + Duration::from_secs(1000)
        );
    }

    #[test]
    fn mount_defaults_apply_unless_posix_permissions_are_recorded() {
        let config = FsConfig {
            uid: 7,
            gid: 8,
            file_mode: 0o640,
            ..FsConfig::default()
        };
        let plain = object_attr(InodeNo(5), FileKind::RegularFile, &object(&[]), &config);
        assert_eq!((plain.perm, plain.uid, plain.gid, plain.size), (0o640, 7, 8, 10));
        let posix = object(&[(META_POSIX_PERMISSIONS, r#"{"UID":1,"GID":2,"Mode":33261}"#)]);
        let attr = object_attr(InodeNo(5), FileKind::RegularFile, &posix, &config);
        assert_eq!((attr.perm, attr.uid, attr.gid), (0o755, 1, 2));
    }

    #[test]
    fn special_files_take_their_type_and_device_from_the_recorded_mode() {
        let config = FsConfig::default();
        let fifo = object(&[(META_POSIX_PERMISSIONS, r#"{"UID":1,"GID":2,"Mode":4516}"#)]);
        let attr = object_attr(InodeNo(5), FileKind::RegularFile, &fifo, &config);
        assert_eq!((attr.kind, attr.perm, attr.rdev), (FileKind::Fifo, 0o644, 0));
        let device = format!(r#"{{"UID":0,"GID":0,"Mode":{},"Rdev":259}}"#, libc::S_IFCHR | 0o600);
        let attr = object_attr(
            InodeNo(5),
            FileKind::RegularFile,
            &object(&[(META_POSIX_PERMISSIONS, &device)]),
            &config,
        );
        assert_eq!((attr.kind, attr.perm, attr.rdev), (FileKind::CharDevice, 0o600, 259));
        // A plain file's mode never turns it into something else.
        let plain = object(&[(META_POSIX_PERMISSIONS, r#"{"Mode":33188}"#)]);
        assert_eq!(
            object_attr(InodeNo(5), FileKind::RegularFile, &plain, &config).kind,
            FileKind::RegularFile
        );
    }
}

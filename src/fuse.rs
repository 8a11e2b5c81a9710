//! The fuser adapter: each callback runs the matching [`Filesystem`] operation on the tokio runtime and replies.
//!
//! FUSE threads are not runtime threads, so `handle.block_on` is safe here; the session runs several FUSE threads
//! so one slow request does not stall the others, and every remote call has its own deadline in the core's client.
//! Errors reach the kernel only through [`fuse_error!`], which logs at the error's own level. Nothing in here
//! decides semantics - that is the core's job.

use std::ffi::OsStr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use fuser::{
    Errno, FileAttr, FileHandle, FileType, FopenFlags, Generation, INodeNo, InitFlags, KernelConfig, LockOwner,
    OpenAccMode, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyDirectoryPlus,
    ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};

use crate::fs::error::ErrorLevel;
use crate::fs::{self, Attr, DirEntry, DirectoryReplier, FileKind, Filesystem, FsError, OpenMode};
use crate::lakefs::LakeFs;

/// Log an error at its level and reply with its errno.
macro_rules! fuse_error {
    ($op:expr, $reply:expr, $err:expr) => {{
        let err: FsError = $err;
        match err.level {
            ErrorLevel::Debug => tracing::debug!(op = $op, errno = err.errno, "{err}"),
            ErrorLevel::Warn => tracing::warn!(op = $op, errno = err.errno, "{err}"),
        }
        crate::metrics::record_fuse_error($op);
        $reply.error(Errno::from_i32(err.errno));
    }};
}

pub struct FuseFilesystem<L: LakeFs> {
    fs: Arc<Filesystem<L>>,
    runtime: tokio::runtime::Handle,
}

impl<L: LakeFs> FuseFilesystem<L> {
    pub fn new(fs: Arc<Filesystem<L>>, runtime: tokio::runtime::Handle) -> Self {
        Self { fs, runtime }
    }

    /// Run one request's future on the runtime inside its own span (op, inode).
    fn block_on<F: std::future::Future>(&self, op: &'static str, ino: INodeNo, future: F) -> F::Output {
        use tracing::Instrument;
        let started = std::time::Instant::now();
        let output = self
            .runtime
            .block_on(future.instrument(tracing::debug_span!("fuse", op, ino = ino.0)));
        crate::metrics::record_fuse(op, started.elapsed());
        output
    }
}

fn to_file_attr(attr: &Attr) -> FileAttr {
    let (kind, nlink) = match attr.kind {
        FileKind::Directory => (FileType::Directory, 2),
        other => (file_type(other), 1),
    };
    FileAttr {
        ino: INodeNo(attr.ino.0),
        size: attr.size,
        blocks: attr.size.div_ceil(512),
        atime: attr.mtime,
        mtime: attr.mtime,
        ctime: attr.ctime,
        crtime: attr.mtime,
        kind,
        perm: attr.perm,
        nlink,
        uid: attr.uid,
        gid: attr.gid,
        rdev: attr.rdev,
        blksize: 128 * 1024,
        flags: 0,
    }
}

fn file_type(kind: FileKind) -> FileType {
    match kind {
        FileKind::Directory => FileType::Directory,
        FileKind::RegularFile => FileType::RegularFile,
        FileKind::Symlink => FileType::Symlink,
        FileKind::Fifo => FileType::NamedPipe,
        FileKind::Socket => FileType::Socket,
        FileKind::CharDevice => FileType::CharDevice,
        FileKind::BlockDevice => FileType::BlockDevice,
    }
}

/// lakeFS keys are UTF-8; a name that is not cannot exist there.
fn utf8_name(name: &OsStr) -> Result<&str, FsError> {
    name.to_str()
        .ok_or_else(|| FsError::not_found(format!("{name:?} is not UTF-8")))
}

struct PlainReplier<'a>(&'a mut ReplyDirectory);

impl DirectoryReplier for PlainReplier<'_> {
    fn add(&mut self, entry: &DirEntry) -> bool {
        self.0.add(
            INodeNo(entry.ino.0),
            entry.offset,
            file_type(entry.attr.kind),
            &entry.name,
        )
    }
}

struct PlusReplier<'a>(&'a mut ReplyDirectoryPlus);

impl DirectoryReplier for PlusReplier<'_> {
    fn add(&mut self, entry: &DirEntry) -> bool {
        self.0.add(
            INodeNo(entry.ino.0),
            entry.offset,
            &entry.name,
            &entry.ttl,
            &to_file_attr(&entry.attr),
            Generation(0),
        )
    }
}

impl<L: LakeFs> fuser::Filesystem for FuseFilesystem<L> {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        // readdirplus primes attributes from listings: `ls -l` costs one listing, not one stat per entry.
        if let Err(missing) = config.add_capabilities(InitFlags::FUSE_DO_READDIRPLUS) {
            tracing::info!(?missing, "kernel does not offer readdirplus");
        }
        // More background requests than the kernel default let readahead keep several GETs in flight.
        let _ = config.set_max_background(64);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let result = match utf8_name(name) {
            Ok(name) => self.block_on("lookup", parent, self.fs.lookup(fs::InodeNo(parent.0), name)),
            Err(err) => Err(err),
        };
        match result {
            Ok(entry) => reply.entry(&entry.ttl, &to_file_attr(&entry.attr), Generation(0)),
            Err(err) => fuse_error!("lookup", reply, err),
        }
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.fs.forget(fs::InodeNo(ino.0), nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.block_on("getattr", ino, self.fs.getattr(fs::InodeNo(ino.0))) {
            Ok(entry) => reply.attr(&entry.ttl, &to_file_attr(&entry.attr)),
            Err(err) => fuse_error!("getattr", reply, err),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.block_on("readlink", ino, self.fs.readlink(fs::InodeNo(ino.0))) {
            Ok(target) => reply.data(target.as_bytes()),
            Err(err) => fuse_error!("readlink", reply, err),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let mode = OpenMode {
            write: !matches!(flags.acc_mode(), OpenAccMode::O_RDONLY),
            truncate: flags.0 & libc::O_TRUNC != 0,
        };
        match self.block_on("open", ino, self.fs.open(fs::InodeNo(ino.0), mode)) {
            Ok(opened) => {
                let mut open_flags = FopenFlags::empty();
                if opened.direct_io {
                    open_flags |= FopenFlags::FOPEN_DIRECT_IO;
                }
                if opened.keep_cache {
                    open_flags |= FopenFlags::FOPEN_KEEP_CACHE;
                }
                reply.opened(FileHandle(opened.fh), open_flags)
            }
            Err(err) => fuse_error!("open", reply, err),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.block_on("read", ino, self.fs.read(fh.0, offset, size)) {
            Ok(data) => reply.data(&data),
            Err(err) => fuse_error!("read", reply, err),
        }
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.fs.release(fh.0);
        reply.ok();
    }

    /// Every `close` flushes: a written file's upload to the staging branch starts here (and, with `sync_close`,
    /// finishes; its error is then what `close` returns).
    fn flush(&self, _req: &Request, ino: INodeNo, fh: FileHandle, _lock_owner: LockOwner, reply: ReplyEmpty) {
        match self.block_on("flush", ino, self.fs.flush(fh.0)) {
            Ok(()) => reply.ok(),
            Err(err) => fuse_error!("flush", reply, err),
        }
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.block_on("opendir", ino, self.fs.opendir(fs::InodeNo(ino.0))) {
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
            Err(err) => fuse_error!("opendir", reply, err),
        }
    }

    fn readdir(&self, _req: &Request, ino: INodeNo, fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        let result = self.block_on(
            "readdir",
            ino,
            self.fs
                .readdir(fs::InodeNo(ino.0), fh.0, offset, false, &mut PlainReplier(&mut reply)),
        );
        match result {
            Ok(()) => reply.ok(),
            Err(err) => fuse_error!("readdir", reply, err),
        }
    }

    fn readdirplus(&self, _req: &Request, ino: INodeNo, fh: FileHandle, offset: u64, mut reply: ReplyDirectoryPlus) {
        let result = self.block_on(
            "readdirplus",
            ino,
            self.fs
                .readdir(fs::InodeNo(ino.0), fh.0, offset, true, &mut PlusReplier(&mut reply)),
        );
        match result {
            Ok(()) => reply.ok(),
            Err(err) => fuse_error!("readdirplus", reply, err),
        }
    }

    /// Answered here, never with fuser's default ENOSYS: after ENOSYS the kernel answers every later getxattr
    /// itself, but reports the POSIX ACL names as ENODATA ("no ACL on this file"), so `ls -l` asks again for
    /// every file; the core's EOPNOTSUPP says the filesystem has no ACLs, which `ls` remembers per filesystem.
    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, _size: u32, reply: ReplyXattr) {
        fuse_error!(
            "getxattr",
            reply,
            self.fs.getxattr(fs::InodeNo(ino.0), name.as_encoded_bytes())
        );
    }

    fn releasedir(&self, _req: &Request, _ino: INodeNo, fh: FileHandle, _flags: OpenFlags, reply: ReplyEmpty) {
        self.fs.releasedir(fh.0);
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        // lakeFS has no meaningful capacity; report a large, mostly free filesystem so tools do not refuse it.
        const BLOCKS: u64 = 1 << 40;
        reply.statfs(
            BLOCKS,
            BLOCKS,
            BLOCKS,
            1 << 30,
            1 << 30,
            4096,
            fs::names::NAME_MAX as u32,
            4096,
        );
    }

    // Modifications: the core decides (EROFS on pinned refs and read-only mounts); these only translate.

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<std::time::SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<std::time::SystemTime>,
        _chgtime: Option<std::time::SystemTime>,
        _bkuptime: Option<std::time::SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let change = fs::SetAttr {
            mode,
            uid,
            gid,
            size,
            mtime: mtime.map(|t| match t {
                TimeOrNow::SpecificTime(time) => time,
                TimeOrNow::Now => std::time::SystemTime::now(),
            }),
        };
        match self.block_on("setattr", ino, self.fs.setattr(fs::InodeNo(ino.0), change)) {
            Ok(entry) => reply.attr(&entry.ttl, &to_file_attr(&entry.attr)),
            Err(err) => fuse_error!("setattr", reply, err),
        }
    }

    fn mknod(&self, req: &Request, parent: INodeNo, name: &OsStr, mode: u32, umask: u32, rdev: u32, reply: ReplyEntry) {
        let result = match utf8_name(name) {
            Ok(name) => self.block_on(
                "mknod",
                parent,
                self.fs.mknod(
                    fs::InodeNo(parent.0),
                    name,
                    mode & !(umask & 0o7777),
                    rdev,
                    fs::Owner {
                        uid: req.uid(),
                        gid: req.gid(),
                    },
                ),
            ),
            Err(err) => Err(err),
        };
        match result {
            Ok(entry) => reply.entry(&entry.ttl, &to_file_attr(&entry.attr), Generation(0)),
            Err(err) => fuse_error!("mknod", reply, err),
        }
    }

    fn mkdir(&self, req: &Request, parent: INodeNo, name: &OsStr, mode: u32, umask: u32, reply: ReplyEntry) {
        let owner = fs::Owner {
            uid: req.uid(),
            gid: req.gid(),
        };
        let result = match utf8_name(name) {
            Ok(name) => self.block_on(
                "mkdir",
                parent,
                self.fs.mkdir_as(fs::InodeNo(parent.0), name, mode & !umask, owner),
            ),
            Err(err) => Err(err),
        };
        match result {
            Ok(entry) => reply.entry(&entry.ttl, &to_file_attr(&entry.attr), Generation(0)),
            Err(err) => fuse_error!("mkdir", reply, err),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let result = match utf8_name(name) {
            Ok(name) => self.block_on("unlink", parent, self.fs.unlink(fs::InodeNo(parent.0), name)),
            Err(err) => Err(err),
        };
        match result {
            Ok(()) => reply.ok(),
            Err(err) => fuse_error!("unlink", reply, err),
        }
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let result = match utf8_name(name) {
            Ok(name) => self.block_on("rmdir", parent, self.fs.rmdir(fs::InodeNo(parent.0), name)),
            Err(err) => Err(err),
        };
        match result {
            Ok(()) => reply.ok(),
            Err(err) => fuse_error!("rmdir", reply, err),
        }
    }

    fn symlink(&self, _req: &Request, parent: INodeNo, link_name: &OsStr, target: &Path, reply: ReplyEntry) {
        let result = match (utf8_name(link_name), target.to_str()) {
            (Ok(name), Some(target)) => {
                self.block_on("symlink", parent, self.fs.symlink(fs::InodeNo(parent.0), name, target))
            }
            (Err(err), _) => Err(err),
            (_, None) => Err(FsError::invalid("symlink targets must be UTF-8")),
        };
        match result {
            Ok(entry) => reply.entry(&entry.ttl, &to_file_attr(&entry.attr), Generation(0)),
            Err(err) => fuse_error!("symlink", reply, err),
        }
    }

    fn link(&self, _req: &Request, ino: INodeNo, _newparent: INodeNo, _newname: &OsStr, reply: ReplyEntry) {
        let err = match self.fs.refuse_write(fs::InodeNo(ino.0), "link") {
            err if err.errno == libc::EROFS => err,
            _ => FsError::not_permitted("link: lakeFS has no hard links"),
        };
        tracing::info!("{err}");
        fuse_error!("link", reply, err);
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let result = if flags.contains(RenameFlags::RENAME_EXCHANGE) {
            Err(FsError::invalid("rename: RENAME_EXCHANGE is not supported"))
        } else {
            match (utf8_name(name), utf8_name(newname)) {
                (Ok(name), Ok(newname)) => self.block_on(
                    "rename",
                    parent,
                    self.fs.rename(
                        fs::InodeNo(parent.0),
                        name,
                        fs::InodeNo(newparent.0),
                        newname,
                        flags.contains(RenameFlags::RENAME_NOREPLACE),
                    ),
                ),
                (Err(err), _) | (_, Err(err)) => Err(err),
            }
        };
        match result {
            Ok(()) => reply.ok(),
            Err(err) => fuse_error!("rename", reply, err),
        }
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        let owner = fs::Owner {
            uid: req.uid(),
            gid: req.gid(),
        };
        let result = match utf8_name(name) {
            Ok(name) => self.block_on(
                "create",
                parent,
                self.fs.create_as(fs::InodeNo(parent.0), name, mode & !umask, owner),
            ),
            Err(err) => Err(err),
        };
        match result {
            Ok((entry, opened)) => reply.created(
                &entry.ttl,
                &to_file_attr(&entry.attr),
                Generation(0),
                FileHandle(opened.fh),
                FopenFlags::empty(),
            ),
            Err(err) => fuse_error!("create", reply, err),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        match self.block_on("write", ino, self.fs.write(fh.0, offset, data)) {
            Ok(written) => reply.written(written),
            Err(err) => fuse_error!("write", reply, err),
        }
    }

    fn fsync(&self, _req: &Request, ino: INodeNo, fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        match self.block_on("fsync", ino, self.fs.fsync(fh.0)) {
            Ok(()) => reply.ok(),
            Err(err) => fuse_error!("fsync", reply, err),
        }
    }
}

/// Blocks waiting for the store thread at most; further offers are dropped while it is behind.
const STORE_QUEUE: usize = 8;

/// Largest single `FUSE_NOTIFY_STORE` message.
const STORE_PIECE: usize = 256 * 1024;

/// Puts data into the kernel's page cache with `FUSE_NOTIFY_STORE`, from a thread of its own: the kernel locks
/// the pages it fills, and one of them may belong to the read whose reply is still being sent, so storing on a
/// FUSE thread could wait for itself.
#[derive(Debug)]
pub struct NotifyStore {
    queue: std::sync::mpsc::SyncSender<(u64, u64, bytes::Bytes)>,
}

impl NotifyStore {
    pub fn start(notifier: fuser::Notifier) -> std::io::Result<Self> {
        let (queue, pending) = std::sync::mpsc::sync_channel::<(u64, u64, bytes::Bytes)>(STORE_QUEUE);
        std::thread::Builder::new().name("fuse-store".into()).spawn(move || {
            for (ino, offset, data) in pending {
                let mut at = offset;
                for piece in data.chunks(STORE_PIECE) {
                    if let Err(err) = notifier.store(INodeNo(ino), at, piece) {
                        // The kernel forgot the inode, or the mount is going away: nothing to fill.
                        tracing::debug!(ino, offset = at, error = %err, "page cache store refused");
                        break;
                    }
                    at += piece.len() as u64;
                }
            }
        })?;
        Ok(Self { queue })
    }
}

impl crate::cache::KernelPageCache for NotifyStore {
    fn offer(&self, ino: u64, offset: u64, data: bytes::Bytes) {
        let _ = self.queue.try_send((ino, offset, data));
    }
}

/// Kernel-side mount settings.
#[derive(Debug, Clone)]
pub struct FuseConfig {
    pub read_only: bool,
    pub allow_other: bool,
    /// FUSE worker threads.
    pub threads: usize,
    /// Shown by `mount` as the source (`fsname=`).
    pub fs_name: String,
    /// The kernel's readahead for this mount in KiB, set once it is live; `None` keeps the kernel's 128 KiB.
    pub read_ahead_kb: Option<u32>,
}

impl FuseConfig {
    pub fn to_fuser_config(&self) -> fuser::Config {
        use fuser::MountOption;
        let mut config = fuser::Config::default();
        config.mount_options = vec![
            MountOption::FSName(self.fs_name.clone()),
            MountOption::Subtype("lakefs".to_string()),
            MountOption::DefaultPermissions,
            MountOption::NoDev,
            MountOption::NoSuid,
            if self.read_only {
                MountOption::RO
            } else {
                MountOption::RW
            },
        ];
        if self.allow_other {
            config.acl = fuser::SessionACL::All;
        }
        config.n_threads = Some(self.threads.max(1));
        config.clone_fd = true;
        config
    }
}

/// Kernel TTL used for entries the core marks as never expiring; exported for tests.
pub const LONG_TTL: Duration = fs::IMMUTABLE_TTL;

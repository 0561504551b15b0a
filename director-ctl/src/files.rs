//! Writing output files safely: `director-ctl table build`, `director-xdp
//! replay` and the daemon's config write all go through [`AtomicFile`].
//!
//! These programs run as root, often with paths in shared directories, so a
//! write must never turn into something else:
//!
//! - **Only regular files are replaced.** An output that exists and is a
//!   device, a FIFO, a socket or a directory is refused, and so is a path
//!   that leads into `/proc` (`/dev/stdout` and the like: a process's file
//!   descriptor, not a file). A path that does not exist yet is created.
//! - **A symbolic link is written through.** The link's final target
//!   (every link of the chain resolved, as the kernel would) is replaced and
//!   the link is kept, so a config reached through a link stays one. As the
//!   kernel's `fs.protected_symlinks` does, a link in a sticky
//!   world-writable directory (`/tmp`) is followed only if its owner is the
//!   directory's owner or the caller.
//! - **The new content goes to a temporary file, then is renamed over the
//!   target**, so that a crash at any moment leaves the old file or the new
//!   one: the temporary file is created beside the target (same directory,
//!   so the rename is atomic), exclusively and without following a link
//!   (`O_CREAT | O_EXCL | O_NOFOLLOW`), under a random name (64 bits from
//!   `getrandom`), mode 0600 while it is written; then fsync, the old
//!   file's mode and owner (or, for a new file, the mode a plain create
//!   would give), rename, fsync of the directory.
//! - **A failed write removes its temporary file and nothing else**: the
//!   output path is never deleted, and the old file stays as it was.
//! - **An output that is one of the command's inputs is refused**, compared
//!   by device and inode, so a hard link or a symbolic link to the input is
//!   caught as well as the same name.

use std::ffi::OsStr;
use std::fmt;
use std::fs::{self, File, Metadata, OpenOptions};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _, OpenOptionsExt as _, PermissionsExt};
use std::path::{Path, PathBuf};

/// Links followed before giving up, as Linux's `MAXSYMLINKS`.
const MAX_LINKS: usize = 40;
/// Random temporary names tried before giving up: a collision of 64-bit
/// names means someone is planting files, not bad luck.
const TEMP_ATTEMPTS: usize = 16;
/// Bytes of the target's name kept in the temporary file's name, which
/// must stay under `NAME_MAX` (255) with the random part.
const NAME_KEPT: usize = 200;

/// Why an output was refused or could not be written. Every message names
/// the path.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// The output exists and is not a regular file.
    #[error("{} is {kind}, not a regular file: refusing to replace it", shown(.path, .target))]
    NotRegular {
        /// The path as given.
        path: PathBuf,
        /// Where its links lead, if it is one.
        target: Option<PathBuf>,
        /// What it is ("a FIFO", "a character device", ...).
        kind: &'static str,
    },
    /// The output is one of the command's inputs.
    #[error(
        "{} is the same file as the input {input}: refusing to overwrite it",
        shown(.path, .target)
    )]
    SameAsInput {
        /// The output as given.
        path: PathBuf,
        /// Where its links lead, if it is one.
        target: Option<PathBuf>,
        /// The input it is.
        input: PathBuf,
    },
    /// The output's links lead into `/proc`: a process's file descriptor
    /// (`/dev/stdout`, `/dev/fd/N`), not a file.
    #[error(
        "{} leads into /proc (a process's file descriptor, not a file): refusing to write through it",
        shown(.path, .target)
    )]
    ProcLink {
        /// The path as given.
        path: PathBuf,
        /// The link target under /proc.
        target: Option<PathBuf>,
    },
    /// More links than [`MAX_LINKS`], or a loop.
    #[error("{path}: too many levels of symbolic links (more than 40)", path = .path.display())]
    LinkLoop {
        /// The path as given.
        path: PathBuf,
    },
    /// A link that the kernel's `fs.protected_symlinks` would not follow
    /// either.
    #[error(
        "{link} is a symbolic link in a sticky world-writable directory, owned by neither the directory's owner nor this user: refusing to follow it",
        link = .link.display()
    )]
    UntrustedLink {
        /// The link refused (the path as given, or a link it leads to).
        link: PathBuf,
    },
    /// The operating system refused an operation.
    #[error("{op} {path}: {error}", path = .path.display())]
    Io {
        /// What was being done ("creating a temporary file in", ...).
        op: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// What the operating system reported.
        error: io::Error,
    },
}

impl FileError {
    /// Whether the output path itself was refused (a usage error), rather
    /// than an operation failing on it.
    pub fn is_refusal(&self) -> bool {
        !matches!(self, FileError::Io { .. })
    }

    fn io(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> FileError {
        let path = path.to_path_buf();
        move |error| FileError::Io { op, path, error }
    }
}

/// `path`, or `path (a link to target)`.
fn shown(path: &Path, target: &Option<PathBuf>) -> String {
    match target {
        Some(t) => format!("{} (a link to {})", path.display(), t.display()),
        None => path.display().to_string(),
    }
}

/// What a file that is not a regular one is, for a message.
fn kind_of(meta: &Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO (named pipe)"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_symlink() {
        "a symbolic link"
    } else {
        "a special file"
    }
}

/// The directory holding `path` (`.` for a bare name).
fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// An output path, resolved and checked ([`Target::resolve`]).
#[derive(Debug, Clone)]
pub struct Target {
    /// The path as given.
    requested: PathBuf,
    /// The file that gets replaced: `requested` with its links resolved.
    path: PathBuf,
    /// The file there now, if any (a regular file).
    existing: Option<Metadata>,
}

impl Target {
    /// Resolves `path` for writing: follows its symbolic links to their
    /// final target, and refuses what must not be replaced (anything but a
    /// regular file, a path into `/proc`, an untrusted link). A path (or
    /// link target) that does not exist yet is fine: it will be created.
    pub fn resolve(path: &Path) -> Result<Target, FileError> {
        let requested = path.to_path_buf();
        let mut current = requested.clone();
        let through = |current: &PathBuf| (*current != requested).then(|| current.clone());
        for _ in 0..=MAX_LINKS {
            if current.starts_with("/proc") && current != requested {
                return Err(FileError::ProcLink {
                    target: through(&current),
                    path: requested,
                });
            }
            let meta = match fs::symlink_metadata(&current) {
                Ok(m) => m,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return Ok(Target {
                        requested,
                        path: current,
                        existing: None,
                    });
                }
                Err(e) => return Err(FileError::io("examining", &current)(e)),
            };
            if meta.is_file() {
                return Ok(Target {
                    requested,
                    path: current,
                    existing: Some(meta),
                });
            }
            if !meta.file_type().is_symlink() {
                return Err(FileError::NotRegular {
                    target: through(&current),
                    path: requested,
                    kind: kind_of(&meta),
                });
            }
            check_link_trusted(&current, &meta)?;
            let link =
                fs::read_link(&current).map_err(FileError::io("reading the link", &current))?;
            // A relative link is relative to the directory holding it; the
            // path is not normalised, so `..` goes where the kernel would.
            current = if link.is_absolute() {
                link
            } else {
                parent_dir(&current).join(link)
            };
        }
        Err(FileError::LinkLoop { path: requested })
    }

    /// The path as given.
    pub fn requested(&self) -> &Path {
        &self.requested
    }

    /// The file that gets replaced (the links' final target).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the path given is a symbolic link (written through).
    pub fn through_link(&self) -> bool {
        self.path != self.requested
    }

    /// Refuses the output if it is the same file as one of `inputs` (by
    /// device and inode: a hard link or a link to an input is caught).
    /// An input that cannot be examined is skipped: reading it fails with
    /// its own error.
    pub fn refuse_inputs(&self, inputs: &[&Path]) -> Result<(), FileError> {
        let Some(out) = &self.existing else {
            return Ok(());
        };
        for input in inputs {
            if let Ok(m) = fs::metadata(input)
                && m.dev() == out.dev()
                && m.ino() == out.ino()
            {
                return Err(FileError::SameAsInput {
                    path: self.requested.clone(),
                    target: self.through_link().then(|| self.path.clone()),
                    input: input.to_path_buf(),
                });
            }
        }
        Ok(())
    }
}

/// As `fs.protected_symlinks`: in a sticky world-writable directory, a
/// link is followed only if its owner is the directory's or the caller.
fn check_link_trusted(link: &Path, meta: &Metadata) -> Result<(), FileError> {
    let dir = parent_dir(link);
    let Ok(d) = fs::metadata(&dir) else {
        return Ok(());
    };
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if d.mode() & 0o1002 == 0o1002 && meta.uid() != d.uid() && meta.uid() != euid {
        return Err(FileError::UntrustedLink {
            link: link.to_path_buf(),
        });
    }
    Ok(())
}

/// 64 random bits from the kernel (`getrandom`, which blocks only until
/// the pool is first initialised).
fn random_u64() -> io::Result<u64> {
    let mut buf = [0u8; 8];
    let mut got = 0;
    while got < buf.len() {
        // SAFETY: the pointer and length describe the unfilled part of
        // `buf`, which outlives the call.
        let n = unsafe { libc::getrandom(buf[got..].as_mut_ptr().cast(), buf.len() - got, 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        got += n as usize;
    }
    Ok(u64::from_ne_bytes(buf))
}

/// The process's umask, from `/proc/self/status` (reading it with
/// `umask(2)` would change it for a moment, under other threads).
fn umask() -> Option<u32> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Umask:"))?;
    u32::from_str_radix(line["Umask:".len()..].trim(), 8).ok()
}

/// A file being written in place of a [`Target`]: a temporary file beside
/// it until [`AtomicFile::commit`] renames it over the target. Dropped
/// without a commit, it removes its temporary file and leaves the target
/// alone.
pub struct AtomicFile {
    file: File,
    temp: PathBuf,
    target: Target,
    /// Set once renamed: nothing left to remove.
    committed: bool,
}

impl fmt::Debug for AtomicFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AtomicFile")
            .field("temp", &self.temp)
            .field("target", &self.target.path)
            .finish_non_exhaustive()
    }
}

impl AtomicFile {
    /// Starts writing `path` ([`Target::resolve`]), refusing it if it is
    /// one of `inputs` ([`Target::refuse_inputs`]).
    pub fn create(path: &Path, inputs: &[&Path]) -> Result<AtomicFile, FileError> {
        let target = Target::resolve(path)?;
        target.refuse_inputs(inputs)?;
        AtomicFile::create_at(target)
    }

    /// Starts writing a resolved target.
    pub fn create_at(target: Target) -> Result<AtomicFile, FileError> {
        AtomicFile::create_named(target, &mut random_u64)
    }

    /// [`AtomicFile::create_at`] with the random part of the temporary
    /// names drawn from `next` (tests plant files at the names it gives).
    fn create_named(
        target: Target,
        next: &mut dyn FnMut() -> io::Result<u64>,
    ) -> Result<AtomicFile, FileError> {
        let dir = parent_dir(&target.path);
        let Some(name) = target.path.file_name() else {
            return Err(FileError::Io {
                op: "writing",
                path: target.requested,
                error: io::Error::new(io::ErrorKind::InvalidInput, "the path names no file"),
            });
        };
        let name = &name.as_bytes()[..name.len().min(NAME_KEPT)];
        for _ in 0..TEMP_ATTEMPTS {
            let random = next().map_err(FileError::io("drawing a random name in", &dir))?;
            let mut temp_name = b".".to_vec();
            temp_name.extend_from_slice(name);
            temp_name.extend_from_slice(format!(".{random:016x}.tmp").as_bytes());
            let temp = dir.join(OsStr::from_bytes(&temp_name));
            // O_EXCL: never an existing file, and (with O_CREAT) never
            // through a link; O_NOFOLLOW says so once more.
            let opened = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(&temp);
            match opened {
                Ok(file) => {
                    return Ok(AtomicFile {
                        file,
                        temp,
                        target,
                        committed: false,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(FileError::io("creating a temporary file in", &dir)(e)),
            }
        }
        Err(FileError::Io {
            op: "creating a temporary file in",
            path: dir,
            error: io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{TEMP_ATTEMPTS} random names were all taken"),
            ),
        })
    }

    /// The target this file replaces.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// Makes the written content the target's: fsync, the old file's owner
    /// and mode (a new file gets what a plain create would give), rename
    /// over the target, fsync of the directory. Refuses (and removes the
    /// temporary file) if something else than a regular file has appeared
    /// at the target meanwhile.
    pub fn commit(mut self) -> Result<(), FileError> {
        let temp = self.temp.clone();
        self.file.flush().map_err(FileError::io("writing", &temp))?;
        let mode = match &self.target.existing {
            Some(old) => {
                let now = self
                    .file
                    .metadata()
                    .map_err(FileError::io("examining", &temp))?;
                if (now.uid(), now.gid()) != (old.uid(), old.gid()) {
                    // Best effort: only root may give a file away.
                    let _ = std::os::unix::fs::fchown(&self.file, Some(old.uid()), Some(old.gid()));
                }
                old.mode() & 0o7777
            }
            None => 0o666 & !umask().unwrap_or(0o077),
        };
        self.file
            .set_permissions(fs::Permissions::from_mode(mode))
            .map_err(FileError::io("setting the mode of", &temp))?;
        self.file
            .sync_all()
            .map_err(FileError::io("syncing", &temp))?;
        let target = &self.target.path;
        match fs::symlink_metadata(target) {
            Ok(m) if !m.is_file() => {
                return Err(FileError::NotRegular {
                    path: self.target.requested.clone(),
                    target: self.target.through_link().then(|| target.clone()),
                    kind: kind_of(&m),
                });
            }
            _ => {}
        }
        fs::rename(&temp, target)
            .map_err(FileError::io("renaming a temporary file over", target))?;
        self.committed = true;
        let dir = parent_dir(target);
        File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(FileError::io("syncing the directory", &dir))
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.file.write_all(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_file(&self.temp);
        }
    }
}

/// Replaces `path` with `bytes` through an [`AtomicFile`].
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), FileError> {
    let mut f = AtomicFile::create(path, &[])?;
    f.write_all(bytes)
        .map_err(FileError::io("writing", &f.temp.clone()))?;
    f.commit()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CString;
    use std::os::unix::fs::symlink;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// A directory removed, with everything in it, when dropped.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(role: &str) -> Scratch {
            static NEXT: AtomicU32 = AtomicU32::new(0);
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let p =
                std::env::temp_dir().join(format!("files-test-{role}-{}-{n}", std::process::id()));
            let _ = fs::remove_dir_all(&p);
            fs::create_dir_all(&p).expect("scratch dir");
            Scratch(p)
        }

        fn join(&self, name: impl AsRef<Path>) -> PathBuf {
            self.0.join(name)
        }

        /// Every name in the directory, sorted.
        fn names(&self) -> Vec<String> {
            let mut v: Vec<String> = fs::read_dir(&self.0)
                .expect("listing")
                .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                .collect();
            v.sort();
            v
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn c_path(p: &Path) -> CString {
        CString::new(p.as_os_str().as_bytes()).expect("no NUL")
    }

    fn mkfifo(p: &Path) {
        // SAFETY: a valid NUL-terminated path.
        let r = unsafe { libc::mkfifo(c_path(p).as_ptr(), 0o600) };
        assert_eq!(
            r,
            0,
            "mkfifo {}: {}",
            p.display(),
            io::Error::last_os_error()
        );
    }

    fn read(p: &Path) -> String {
        fs::read_to_string(p).expect("reading")
    }

    fn is_link(p: &Path) -> bool {
        fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_symlink())
    }

    #[test]
    fn creates_a_new_file_and_replaces_an_old_one_keeping_its_mode() {
        let dir = Scratch::new("plain");
        let out = dir.join("out.json");
        write_atomically(&out, b"one").expect("new file");
        assert_eq!(read(&out), "one");
        let want = 0o666 & !umask().expect("umask");
        assert_eq!(fs::metadata(&out).expect("meta").mode() & 0o7777, want);
        fs::set_permissions(&out, fs::Permissions::from_mode(0o640)).expect("chmod");
        let inode = fs::metadata(&out).expect("meta").ino();
        write_atomically(&out, b"two").expect("replacing");
        assert_eq!(read(&out), "two");
        let m = fs::metadata(&out).expect("meta");
        assert_eq!(m.mode() & 0o7777, 0o640, "the old mode is kept");
        assert_ne!(m.ino(), inode, "a new file renamed over the old one");
        assert_eq!(dir.names(), ["out.json"], "no temporary file left");
    }

    #[test]
    fn a_link_is_written_through_and_kept() {
        let dir = Scratch::new("link");
        fs::create_dir(dir.join("real")).expect("mkdir");
        let target = dir.join("real/config.json");
        fs::write(&target, "old").expect("target");
        // A chain: abs -> rel -> real/config.json.
        symlink("real/config.json", dir.join("rel")).expect("link");
        symlink(dir.join("rel"), dir.join("abs")).expect("link");
        for (link, text) in [("rel", "first"), ("abs", "second")] {
            let link = dir.join(link);
            let t = Target::resolve(&link).expect("resolves");
            assert_eq!(t.path(), dir.join("real/config.json"));
            assert!(t.through_link());
            write_atomically(&link, text.as_bytes()).expect("written through");
            assert!(is_link(&link), "{} stays a link", link.display());
            assert_eq!(read(&target), text);
        }
        assert!(is_link(&dir.join("rel")));
        assert_eq!(dir.names(), ["abs", "real", "rel"]);
        assert_eq!(fs::read_dir(dir.join("real")).expect("ls").count(), 1);
        // A dangling link: its target is created, the link kept.
        symlink("real/new.json", dir.join("dangling")).expect("link");
        write_atomically(&dir.join("dangling"), b"new").expect("created");
        assert!(is_link(&dir.join("dangling")));
        assert_eq!(read(&dir.join("real/new.json")), "new");
    }

    #[test]
    fn a_link_planted_at_the_temporary_name_is_not_followed() {
        let dir = Scratch::new("planted");
        let out = dir.join("out.json");
        let victim = dir.join("victim");
        fs::write(&victim, "precious").expect("victim");
        fs::write(&out, "old").expect("out");
        // The first name drawn is taken by a link to the victim, the second
        // by a regular file: the third is used, and neither is touched.
        let names = [1u64, 2, 3];
        symlink(
            &victim,
            dir.join(format!(".out.json.{:016x}.tmp", names[0])),
        )
        .expect("plant");
        fs::write(dir.join(format!(".out.json.{:016x}.tmp", names[1])), "x").expect("plant");
        let mut drawn = names.into_iter();
        let mut next = || Ok(drawn.next().expect("a name"));
        let target = Target::resolve(&out).expect("resolves");
        let mut f = AtomicFile::create_named(target, &mut next).expect("third name");
        f.write_all(b"new").expect("write");
        f.commit().expect("commit");
        assert_eq!(read(&out), "new");
        assert_eq!(read(&victim), "precious", "the link was not followed");
        assert!(is_link(
            &dir.join(format!(".out.json.{:016x}.tmp", names[0]))
        ));
        assert_eq!(
            read(&dir.join(format!(".out.json.{:016x}.tmp", names[1]))),
            "x"
        );
        assert_eq!(dir.names().len(), 4, "{:?}", dir.names());
        // Every name taken: a clear error, nothing written.
        let target = Target::resolve(&out).expect("resolves");
        let e = AtomicFile::create_named(target, &mut || Ok(1)).expect_err("all taken");
        assert!(e.to_string().contains("random names were all taken"), "{e}");
        assert_eq!(read(&victim), "precious");
    }

    #[test]
    fn what_is_not_a_regular_file_is_refused_and_left_alone() {
        let dir = Scratch::new("special");
        let fifo = dir.join("fifo");
        mkfifo(&fifo);
        let e = write_atomically(&fifo, b"x").expect_err("a FIFO");
        assert!(e.is_refusal());
        assert_eq!(
            e.to_string(),
            format!(
                "{} is a FIFO (named pipe), not a regular file: refusing to replace it",
                fifo.display()
            )
        );
        symlink("fifo", dir.join("to-fifo")).expect("link");
        let e = write_atomically(&dir.join("to-fifo"), b"x").expect_err("a link to a FIFO");
        assert_eq!(
            e.to_string(),
            format!(
                "{} (a link to {}) is a FIFO (named pipe), not a regular file: refusing to replace it",
                dir.join("to-fifo").display(),
                dir.join("fifo").display()
            )
        );
        let e = write_atomically(&dir.0, b"x").expect_err("a directory");
        assert!(e.to_string().contains("is a directory"), "{e}");
        let socket = dir.join("socket");
        let _listener = std::os::unix::net::UnixListener::bind(&socket).expect("socket");
        let e = write_atomically(&socket, b"x").expect_err("a socket");
        assert!(e.to_string().contains("is a socket"), "{e}");
        // A character device like /dev/null (1, 3), made here: only root
        // may, and the tests run as root; never touch /dev itself.
        let null = dir.join("null");
        // SAFETY: a valid NUL-terminated path.
        let r = unsafe {
            libc::mknod(
                c_path(&null).as_ptr(),
                libc::S_IFCHR | 0o666,
                libc::makedev(1, 3),
            )
        };
        if r == 0 {
            let e = write_atomically(&null, b"x").expect_err("a device");
            assert!(e.to_string().contains("is a character device"), "{e}");
            assert!(
                fs::symlink_metadata(&null)
                    .expect("meta")
                    .file_type()
                    .is_char_device()
            );
        } else {
            eprintln!("mknod refused (not root?): the device case is not checked");
            let _ = fs::remove_file(&null);
        }
        assert!(
            fs::symlink_metadata(&fifo)
                .expect("meta")
                .file_type()
                .is_fifo()
        );
        assert!(is_link(&dir.join("to-fifo")));
        let mut names = dir.names();
        names.retain(|n| n.starts_with('.'));
        assert!(names.is_empty(), "no temporary file: {names:?}");
        // A file descriptor under /proc is not a file either.
        let e = Target::resolve(Path::new("/dev/stdout")).expect_err("/dev/stdout");
        assert!(e.to_string().contains("leads into /proc"), "{e}");
    }

    #[test]
    fn an_output_that_is_an_input_is_refused_by_inode() {
        let dir = Scratch::new("same");
        let input = dir.join("config.json");
        fs::write(&input, "config").expect("input");
        fs::hard_link(&input, dir.join("hard")).expect("hard link");
        symlink("config.json", dir.join("soft")).expect("link");
        fs::write(dir.join("other"), "other").expect("other");
        for name in ["config.json", "hard", "soft"] {
            let out = dir.join(name);
            let e = AtomicFile::create(&out, &[&dir.join("other"), &input]).expect_err(name);
            assert!(e.is_refusal());
            assert!(
                e.to_string().contains(&format!(
                    "is the same file as the input {}: refusing to overwrite it",
                    input.display()
                )),
                "{e}"
            );
        }
        // The input named through a link is caught too.
        let e = AtomicFile::create(&input, &[&dir.join("soft")]).expect_err("via the input");
        assert!(matches!(e, FileError::SameAsInput { .. }), "{e}");
        assert_eq!(read(&input), "config");
        assert_eq!(dir.names(), ["config.json", "hard", "other", "soft"]);
        // Another file is fine.
        let mut f = AtomicFile::create(&dir.join("out"), &[&input]).expect("not an input");
        f.write_all(b"out").expect("write");
        f.commit().expect("commit");
    }

    #[test]
    fn a_failed_write_leaves_the_old_file_and_no_temporary_file() {
        let dir = Scratch::new("fail");
        let out = dir.join("out.pcap");
        fs::write(&out, "old").expect("old");
        {
            let mut f = AtomicFile::create(&out, &[]).expect("create");
            f.write_all(b"half of it").expect("write");
            assert_eq!(dir.names().len(), 2, "the temporary file beside it");
            // Dropped: the write failed.
        }
        assert_eq!(read(&out), "old");
        assert_eq!(dir.names(), ["out.pcap"]);
        // A new output that fails leaves nothing at all.
        drop(AtomicFile::create(&dir.join("new"), &[]).expect("create"));
        assert_eq!(dir.names(), ["out.pcap"]);
        // Something else than a file appeared at the target meanwhile:
        // refused at the commit, which removes its temporary file.
        let mut f = AtomicFile::create(&out, &[]).expect("create");
        f.write_all(b"new").expect("write");
        fs::remove_file(&out).expect("rm");
        mkfifo(&out);
        let e = f.commit().expect_err("a FIFO now");
        assert!(e.to_string().contains("is a FIFO"), "{e}");
        assert!(
            fs::symlink_metadata(&out)
                .expect("meta")
                .file_type()
                .is_fifo()
        );
        assert_eq!(dir.names(), ["out.pcap"]);
        // An unwritable directory: a clear error naming it.
        let e = write_atomically(&dir.join("missing/out"), b"x").expect_err("no directory");
        assert!(!e.is_refusal());
        assert!(
            e.to_string().starts_with(&format!(
                "creating a temporary file in {}: ",
                dir.join("missing").display()
            )),
            "{e}"
        );
    }

    #[test]
    fn links_that_loop_or_that_a_stranger_planted_in_tmp_are_refused() {
        let dir = Scratch::new("loop");
        symlink("b", dir.join("a")).expect("link");
        symlink("a", dir.join("b")).expect("link");
        let e = write_atomically(&dir.join("a"), b"x").expect_err("a loop");
        assert!(
            e.to_string().contains("too many levels of symbolic links"),
            "{e}"
        );
        // A sticky world-writable directory (as /tmp) owned by this user,
        // holding a link owned by someone else: not followed.
        let sticky = dir.join("sticky");
        fs::create_dir(&sticky).expect("mkdir");
        fs::set_permissions(&sticky, fs::Permissions::from_mode(0o1777)).expect("chmod");
        let victim = dir.join("victim");
        fs::write(&victim, "precious").expect("victim");
        let link = sticky.join("out");
        symlink(&victim, &link).expect("link");
        // SAFETY: geteuid cannot fail.
        let me = unsafe { libc::geteuid() };
        let stranger = if me == 65534 { 65533 } else { 65534 };
        if std::os::unix::fs::lchown(&link, Some(stranger), None).is_ok() {
            let e = write_atomically(&link, b"x").expect_err("untrusted");
            assert!(e.is_refusal());
            assert!(e.to_string().contains("sticky world-writable"), "{e}");
            assert_eq!(read(&victim), "precious");
            // The caller's own link there is followed.
            std::os::unix::fs::lchown(&link, Some(me), None).expect("lchown back");
            write_atomically(&link, b"mine").expect("trusted");
            assert_eq!(read(&victim), "mine");
        } else {
            eprintln!("lchown refused (not root?): the sticky-directory case is not checked");
        }
    }
}

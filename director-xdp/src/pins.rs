//! The director's pins on bpffs (`director.pin_dir`): its maps (one file
//! per map, named as in the object), its XDP link (`link`), and an empty
//! directory named by [`layout_marker`] that tells which map layout the
//! pins have (bpffs holds pinned objects and directories only, no regular
//! files).
//!
//! A daemon that finds pins of its layout whose link is the program
//! attached to its interface adopts them: it loads its program with the
//! pinned maps, writes its config into the idle slots, flips, and swaps its
//! program into the link in one step (`BPF_LINK_UPDATE`). The interface
//! never goes without a program, and the maps (tables, counters) are never
//! recreated, so no packet is lost across a restart or a crash. Other pins
//! (another layout, a link attached to nothing) are removed with a warning
//! and the director starts fresh, which is not hitless.

use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, anyhow};
use aya::programs::links::{FdLink, PinnedLink};
use director_xdp::dataplane::layout_marker;
use director_xdp::neigh;
use proto::config::{Config, Director};
use tracing::{info, warn};

/// The pinned link's file name.
pub(crate) const LINK: &str = "link";

const BPFFS: &str = "/sys/fs/bpf";
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// `director.pin_dir`, or the default for `interface` in this network
/// namespace.
pub(crate) fn pin_dir(config: &Config, interface: &str) -> PathBuf {
    if let Some(d) = &config.director.pin_dir {
        return d.clone();
    }
    let inode = |p: &str| std::fs::metadata(p).map(|m| m.ino()).ok();
    let me = inode("/proc/self/ns/net");
    let host = inode("/proc/1/ns/net");
    let netns = match (me, host) {
        (Some(me), Some(host)) if me != host => Some(me),
        _ => None,
    };
    Director::default_pin_dir(interface, netns)
}

/// Mounts bpffs on /sys/fs/bpf unless it is mounted there already (in this
/// mount namespace).
pub(crate) fn ensure_bpffs() -> anyhow::Result<()> {
    let path = std::ffi::CString::new(BPFFS).map_err(|e| anyhow!("{e}"))?;
    // SAFETY: statfs on a valid NUL-terminated path into a zeroed struct.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::statfs(path.as_ptr(), &raw mut st) } == 0
        && i64::from(st.f_type as u32) == BPF_FS_MAGIC
    {
        return Ok(());
    }
    std::fs::create_dir_all(BPFFS).with_context(|| format!("creating {BPFFS}"))?;
    let fstype = std::ffi::CString::new("bpf").map_err(|e| anyhow!("{e}"))?;
    // SAFETY: valid NUL-terminated strings; no data argument.
    let rc = unsafe {
        libc::mount(
            fstype.as_ptr(),
            path.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("mounting bpffs on {BPFFS}"));
    }
    info!("mounted bpffs on {BPFFS}");
    Ok(())
}

/// What the pin directory held at start.
pub(crate) enum Found {
    /// Nothing to adopt (the directory is empty, or was emptied).
    Fresh,
    /// Pins of this layout whose link is attached to the interface.
    Adopt(FdLink),
}

/// Looks at `dir` (created if missing) and decides whether to adopt it;
/// pins that cannot be adopted are removed, with the reason in the log.
pub(crate) fn inspect(dir: &Path, interface: &str, ifindex: u32) -> anyhow::Result<Found> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("creating the pin directory {}", dir.display()))?;
    let marker = dir.join(layout_marker());
    let empty = std::fs::read_dir(dir)
        .with_context(|| format!("reading the pin directory {}", dir.display()))?
        .next()
        .is_none();
    if empty {
        return fresh(dir);
    }
    if !marker.exists() {
        warn!(
            "the pins in {} have another map layout than this build (no {}): an upgrade changed the maps; removing them and starting fresh: NOT hitless, {interface} has no director until it is attached again",
            dir.display(),
            marker.display()
        );
        return reset(dir);
    }
    let link_path = dir.join(LINK);
    if !link_path.exists() {
        warn!(
            "the pins in {} have no XDP link (a director that stopped before attaching); removing them and starting fresh",
            dir.display()
        );
        return reset(dir);
    }
    let link = FdLink::from(
        PinnedLink::from_pin(&link_path)
            .with_context(|| format!("opening the pinned link {}", link_path.display()))?,
    );
    let prog = link
        .info()
        .with_context(|| format!("reading the pinned link {}", link_path.display()))?
        .program_id();
    let attached = neigh::xdp_prog_id(ifindex)
        .with_context(|| format!("reading the XDP program of {interface}"))?;
    if attached != Some(prog) {
        warn!(
            "the pinned link {} runs program {prog}, but {interface} runs {} (pins of a director that is gone, or of another interface); removing them and starting fresh",
            link_path.display(),
            attached.map_or_else(|| "none".to_string(), |p| format!("program {p}"))
        );
        drop(link);
        return reset(dir);
    }
    Ok(Found::Adopt(link))
}

/// Empties `dir` and marks it with this build's layout.
pub(crate) fn reset(dir: &Path) -> anyhow::Result<Found> {
    clear(dir)?;
    fresh(dir)
}

fn fresh(dir: &Path) -> anyhow::Result<Found> {
    let marker = dir.join(layout_marker());
    std::fs::create_dir_all(&marker)
        .with_context(|| format!("creating the layout marker {}", marker.display()))?;
    Ok(Found::Fresh)
}

/// Removes every pin (and the layout marker) in `dir`, not `dir` itself.
pub(crate) fn clear(dir: &Path) -> anyhow::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
    };
    for entry in entries {
        let path = entry
            .with_context(|| format!("reading {}", dir.display()))?
            .path();
        let removed = if path.is_dir() {
            std::fs::remove_dir(&path)
        } else {
            std::fs::remove_file(&path)
        };
        removed.with_context(|| format!("removing the pin {}", path.display()))?;
    }
    Ok(())
}

/// Removes every pin, then `dir` and its parents up to /sys/fs/bpf that
/// are left empty.
pub(crate) fn remove(dir: &Path) -> anyhow::Result<()> {
    clear(dir)?;
    let mut at = Some(dir);
    while let Some(d) = at {
        if d == Path::new(BPFFS) || !d.starts_with(BPFFS) || std::fs::remove_dir(d).is_err() {
            break;
        }
        at = d.parent();
    }
    Ok(())
}

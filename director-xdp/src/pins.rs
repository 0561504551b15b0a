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

/// The nsfs inode of the initial network namespace on kernels that fix it
/// (include/linux/proc_ns.h, `PROC_NET_INIT_INO`). Older kernels number
/// init_net like any other namespace, but always from 0xF0000000 up
/// (`PROC_DYNAMIC_FIRST`): no other network namespace can have this inode,
/// on any kernel.
const PROC_NET_INIT_INO: u64 = 0xEFFF_FFF9;
/// The nsfs inode of the initial PID namespace (`PROC_PID_INIT_INO`,
/// fixed since Linux 3.8).
const PROC_PID_INIT_INO: u64 = 0xEFFF_FFFC;

/// A namespace file's identity: its nsfs device and inode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct NsFile {
    /// `st_dev`.
    pub(crate) dev: u64,
    /// `st_ino`: the namespace's number.
    pub(crate) ino: u64,
}

/// What the default pin directory is decided from, each as read (or why
/// it could not be read): this process's network and PID namespaces and
/// pid 1's network namespace, as `/proc` shows them.
#[derive(Clone, Debug)]
pub(crate) struct NsFacts {
    /// `/proc/self/ns/net`.
    pub(crate) net: Result<NsFile, String>,
    /// `/proc/self/ns/pid`.
    pub(crate) pid: Result<NsFile, String>,
    /// `/proc/1/ns/net`.
    pub(crate) init_net: Result<NsFile, String>,
}

impl NsFacts {
    /// Reads them (`stat` through the `/proc` links).
    fn read() -> NsFacts {
        let file = |path: &str| {
            std::fs::metadata(path)
                .map(|m| NsFile {
                    dev: m.dev(),
                    ino: m.ino(),
                })
                .map_err(|e| format!("{path}: {e}"))
        };
        NsFacts {
            net: file("/proc/self/ns/net"),
            pid: file("/proc/self/ns/pid"),
            init_net: file("/proc/1/ns/net"),
        }
    }
}

/// This process's network namespace, as far as the default pin directory
/// goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Netns {
    /// Proven to be the initial (host) network namespace; `why` is the
    /// proof.
    Host { why: String },
    /// Another namespace, or one not proven to be the host's: its inode,
    /// and why.
    Other { inode: u64, why: String },
}

/// Decides whether this process is in the host's network namespace. Only
/// proof gives [`Netns::Host`]: network namespaces share bpffs, so a
/// director wrongly taken for the host's would pin where the host's
/// director pins, and the two would remove each other's pins.
///
/// Proof is either the fixed inode of the initial network namespace, or,
/// on kernels that do not fix it, being in pid 1's network namespace while
/// in the initial PID namespace (only there is pid 1 the host's init: in a
/// container with a PID namespace of its own, pid 1 is the container's
/// init, in the container's network namespace). Fails when this process's
/// own network namespace cannot be read: nothing can be proven then, and
/// the namespaced directory needs its inode.
pub(crate) fn netns(facts: &NsFacts) -> Result<Netns, String> {
    let net = facts
        .net
        .as_ref()
        .map_err(|e| format!("cannot tell this network namespace from the host's: reading {e}"))?;
    if net.ino == PROC_NET_INIT_INO {
        return Ok(Netns::Host {
            why: format!(
                "its inode {} is the initial network namespace's fixed one",
                net.ino
            ),
        });
    }
    let other = |why: String| {
        Ok(Netns::Other {
            inode: net.ino,
            why: format!(
                "its inode is not the initial network namespace's fixed {PROC_NET_INIT_INO} (which only recent kernels fix), and pid 1 cannot vouch for it: {why}"
            ),
        })
    };
    match (&facts.pid, &facts.init_net) {
        (Ok(pid), _) if pid.ino != PROC_PID_INIT_INO => other(format!(
            "this process has a PID namespace of its own (inode {}), whose pid 1 is not the host's init",
            pid.ino
        )),
        (Err(e), _) | (Ok(_), Err(e)) => other(format!("reading {e}")),
        (Ok(_), Ok(init)) if init == net => Ok(Netns::Host {
            why: format!(
                "its inode {} is that of pid 1, the host's init (this process is in the initial PID namespace)",
                net.ino
            ),
        }),
        (Ok(_), Ok(init)) => other(format!(
            "pid 1, the host's init, is in network namespace {}",
            init.ino
        )),
    }
}

/// `director.pin_dir`, or the default for `interface` in this network
/// namespace (see [`netns`]); logs which and why.
pub(crate) fn pin_dir(config: &Config, interface: &str) -> anyhow::Result<PathBuf> {
    if let Some(d) = &config.director.pin_dir {
        info!("pin directory {} (director.pin_dir)", d.display());
        return Ok(d.clone());
    }
    let netns = netns(&NsFacts::read()).map_err(|e| {
        anyhow!("choosing the default pin directory for {interface}: {e}; set director.pin_dir")
    })?;
    let (dir, why) = match netns {
        Netns::Host { why } => (
            Director::default_pin_dir(interface, None),
            format!("the host's network namespace: {why}"),
        ),
        Netns::Other { inode, why } => (
            Director::default_pin_dir(interface, Some(inode)),
            format!("network namespace {inode}, not proven to be the host's: {why}"),
        ),
    };
    info!("pin directory {} (default): {why}", dir.display());
    Ok(dir)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// nsfs's device on the machine these numbers come from.
    const NSFS: u64 = 4;
    /// A network namespace created after boot (`ip netns add`).
    const LAB_NET: u64 = 4_026_532_174;
    /// init_net's inode on a kernel that does not fix it: a dynamic one.
    const OLD_INIT_NET: u64 = 4_026_531_992;
    /// A container's PID namespace.
    const CONTAINER_PID: u64 = 4_026_532_301;

    fn file(ino: u64) -> Result<NsFile, String> {
        Ok(NsFile { dev: NSFS, ino })
    }

    fn denied(path: &str) -> Result<NsFile, String> {
        Err(format!("{path}: Permission denied (os error 13)"))
    }

    fn facts(
        net: Result<NsFile, String>,
        pid: Result<NsFile, String>,
        init_net: Result<NsFile, String>,
    ) -> NsFacts {
        NsFacts { net, pid, init_net }
    }

    fn host(f: &NsFacts) -> bool {
        matches!(netns(f), Ok(Netns::Host { .. }))
    }

    fn other(f: &NsFacts) -> Option<u64> {
        match netns(f) {
            Ok(Netns::Other { inode, .. }) => Some(inode),
            _ => None,
        }
    }

    #[test]
    fn the_fixed_init_inode_proves_the_host_namespace_whatever_pid_1_says() {
        let init = PROC_NET_INIT_INO;
        for f in [
            // This machine: /proc/1/ns/net denied even to root.
            facts(
                file(init),
                file(PROC_PID_INIT_INO),
                denied("/proc/1/ns/net"),
            ),
            facts(file(init), file(PROC_PID_INIT_INO), file(init)),
            // A container with the host's network but its own PID namespace.
            facts(file(init), file(CONTAINER_PID), file(LAB_NET)),
            facts(file(init), denied("/proc/self/ns/pid"), denied("x")),
        ] {
            assert!(host(&f), "{f:?}: {:?}", netns(&f));
        }
        assert_eq!(
            PROC_NET_INIT_INO, 4_026_531_833,
            "stat -L -c %i on the host"
        );
    }

    #[test]
    fn another_namespace_on_a_kernel_with_the_fixed_inode_is_namespaced() {
        // The case that used to pin to the host path: /proc/1 unreadable.
        let f = facts(
            file(LAB_NET),
            file(PROC_PID_INIT_INO),
            denied("/proc/1/ns/net"),
        );
        assert_eq!(other(&f), Some(LAB_NET));
        let Ok(Netns::Other { why, .. }) = netns(&f) else {
            unreachable!()
        };
        assert!(
            why.ends_with("reading /proc/1/ns/net: Permission denied (os error 13)"),
            "{why}"
        );
        let f = facts(
            file(LAB_NET),
            file(PROC_PID_INIT_INO),
            file(PROC_NET_INIT_INO),
        );
        assert_eq!(other(&f), Some(LAB_NET));
    }

    #[test]
    fn pid_1_proves_the_host_namespace_only_from_the_initial_pid_namespace() {
        // An older kernel: init_net has a dynamic inode.
        let f = facts(
            file(OLD_INIT_NET),
            file(PROC_PID_INIT_INO),
            file(OLD_INIT_NET),
        );
        assert!(host(&f), "{:?}", netns(&f));
        // Another network namespace than pid 1's.
        let f = facts(file(LAB_NET), file(PROC_PID_INIT_INO), file(OLD_INIT_NET));
        assert_eq!(other(&f), Some(LAB_NET));
        // A container with its own PID namespace: its pid 1 shares its
        // network namespace, which is not the host's.
        let f = facts(file(LAB_NET), file(CONTAINER_PID), file(LAB_NET));
        assert_eq!(other(&f), Some(LAB_NET));
        let Ok(Netns::Other { why, .. }) = netns(&f) else {
            unreachable!()
        };
        assert!(why.contains("PID namespace of its own"), "{why}");
        // The same inode on another device is another file.
        let f = facts(
            file(OLD_INIT_NET),
            file(PROC_PID_INIT_INO),
            Ok(NsFile {
                dev: NSFS + 1,
                ino: OLD_INIT_NET,
            }),
        );
        assert_eq!(other(&f), Some(OLD_INIT_NET));
    }

    #[test]
    fn without_readable_proof_an_older_kernel_gets_the_namespaced_directory() {
        for f in [
            // pid 1 unreadable.
            facts(
                file(OLD_INIT_NET),
                file(PROC_PID_INIT_INO),
                denied("/proc/1/ns/net"),
            ),
            // Our PID namespace unreadable: pid 1 may be anyone's init.
            facts(
                file(OLD_INIT_NET),
                denied("/proc/self/ns/pid"),
                file(OLD_INIT_NET),
            ),
        ] {
            assert_eq!(other(&f), Some(OLD_INIT_NET), "{f:?}");
        }
    }

    #[test]
    fn an_unreadable_network_namespace_is_an_error_not_the_host() {
        let f = facts(
            denied("/proc/self/ns/net"),
            file(PROC_PID_INIT_INO),
            file(PROC_NET_INIT_INO),
        );
        assert_eq!(
            netns(&f),
            Err(
                "cannot tell this network namespace from the host's: reading /proc/self/ns/net: Permission denied (os error 13)"
                    .to_string()
            )
        );
    }

    #[test]
    fn the_decision_reads_the_namespaces_of_this_test_process() {
        // Whatever namespace the tests run in, the facts of a live process
        // lead to a decision, never to an error.
        let f = NsFacts::read();
        assert!(f.net.is_ok() && f.pid.is_ok(), "{f:?}");
        assert!(netns(&f).is_ok(), "{f:?}");
    }
}

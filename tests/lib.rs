//! Helpers for the end-to-end tests that build their own hosts in network
//! namespaces (docs/spec.md section 5): unique names, and removal on every exit
//! path, panics included. Nothing here touches the root namespace: every
//! interface, address, route and XDP program is created inside a namespace
//! that the test owns.

pub mod chromium;
pub mod fleet_lab;
pub mod glb;
pub mod http;
pub mod pkt;
pub mod redirect_lab;

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Runs a command and fails with its stderr if it fails.
pub fn run(cmd: &str, args: &[&str]) -> io::Result<Output> {
    let out = Command::new(cmd).args(args).output()?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "{cmd} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(out)
}

/// A network namespace that exists as long as this value: created with a
/// name unique to the process and the test, deleted on drop (which also
/// deletes the interfaces inside it and detaches their XDP programs).
#[derive(Debug)]
pub struct Netns {
    name: String,
}

static NEXT: AtomicU32 = AtomicU32::new(0);

impl Netns {
    /// Creates `glbt-<role>-<pid>-<n>`, with loopback up.
    pub fn new(role: &str) -> io::Result<Netns> {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("glbt-{role}-{}-{n}", std::process::id());
        run("ip", &["netns", "add", &name])?;
        let ns = Netns { name };
        ns.exec("ip", &["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs a command inside the namespace.
    pub fn exec(&self, cmd: &str, args: &[&str]) -> io::Result<Output> {
        let mut all = vec!["netns", "exec", &self.name, cmd];
        all.extend_from_slice(args);
        run("ip", &all)
    }

    /// `ip ARGS` inside the namespace.
    pub fn ip(&self, args: &[&str]) -> io::Result<Output> {
        let mut all = vec!["-n", &self.name];
        all.extend_from_slice(args);
        run("ip", &all)
    }

    /// A permanent neighbour entry on `eth0`: `ip` is at `mac`.
    pub fn add_neighbour(&self, ip: &str, mac: &str) -> io::Result<Output> {
        self.ip(&[
            "neigh",
            "add",
            ip,
            "lladdr",
            mac,
            "dev",
            "eth0",
            "nud",
            "permanent",
        ])
    }

    /// Starts a long-running command inside the namespace; it is killed when
    /// the returned value is dropped.
    pub fn spawn(&self, cmd: &str, args: &[&str], log: PathBuf) -> io::Result<Daemon> {
        let file = File::create(&log)?;
        let child = Command::new("ip")
            .args(["netns", "exec", &self.name, cmd])
            .args(args)
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()?;
        Ok(Daemon { child, log })
    }

    /// Like [`Netns::spawn`], but in the mount namespace `mnt` (entered
    /// with `nsenter`, which execs: the pid is the program's) rather than
    /// in the private one `ip netns exec` makes, whose fresh /sys hides any
    /// bpffs: pins made there do not outlive the process.
    pub fn spawn_in_mount(
        &self,
        mnt: &MountNs,
        cmd: &str,
        args: &[&str],
        log: PathBuf,
    ) -> io::Result<Daemon> {
        let file = File::create(&log)?;
        let net = format!("--net={}", self.path().display());
        let target = mnt.pid().to_string();
        let child = Command::new("nsenter")
            .args(["--target", &target, "--mount", &net, "--", cmd])
            .args(args)
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()?;
        Ok(Daemon { child, log })
    }

    /// Runs `f` on a thread that has entered the namespace (sockets it opens
    /// live there) and returns its result.
    pub fn run_in<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> io::Result<T> + Send + 'static,
    ) -> io::Result<T> {
        let path = self.path();
        std::thread::spawn(move || {
            enter(&path)?;
            f()
        })
        .join()
        .map_err(|_| io::Error::other("thread inside the namespace panicked"))?
    }

    /// Like [`Netns::run_in`], without waiting: `f` runs on a thread inside
    /// the namespace; join the handle for its result.
    pub fn spawn_in<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> io::Result<T> + Send + 'static,
    ) -> JoinHandle<io::Result<T>> {
        let path = self.path();
        std::thread::spawn(move || {
            enter(&path)?;
            f()
        })
    }

    fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.name])
            .output();
    }
}

/// A private mount namespace held by a sleeping process, killed on drop:
/// whatever is mounted inside (a bpffs and its pins) goes with it, on every
/// exit path. Outlives the processes started in it, so pins survive them.
#[derive(Debug)]
pub struct MountNs {
    holder: Child,
}

impl MountNs {
    /// Starts the holder (`unshare --mount --propagation private`).
    pub fn new() -> io::Result<MountNs> {
        let holder = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sleep", "100000"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let ns = MountNs { holder };
        // Wait until `unshare` has exec'd `sleep`, i.e. the namespace exists.
        let mine = std::fs::read_link("/proc/self/ns/mnt")?;
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if let Ok(theirs) = std::fs::read_link(format!("/proc/{}/ns/mnt", ns.pid()))
                && theirs != mine
            {
                return Ok(ns);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Err(io::Error::other("unshare --mount did not start"))
    }

    /// The holder's pid (for `nsenter --target`).
    pub fn pid(&self) -> u32 {
        self.holder.id()
    }

    /// Runs a command inside the mount namespace and returns its output.
    pub fn exec(&self, cmd: &str, args: &[&str]) -> io::Result<Output> {
        let target = self.pid().to_string();
        let mut all = vec!["--target", &target, "--mount", "--", cmd];
        all.extend_from_slice(args);
        Command::new("nsenter").args(&all).output()
    }
}

impl Drop for MountNs {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

/// Moves the calling thread into the namespace at `path`.
fn enter(path: &std::path::Path) -> io::Result<()> {
    let fd = File::open(path)?;
    // SAFETY: setns on a valid namespace fd affects only the calling thread.
    if unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Whether a namespace of that name exists.
pub fn netns_exists(name: &str) -> bool {
    std::path::Path::new("/run/netns").join(name).exists()
}

/// Connects `a` and `b` with a veth pair named `a_if` (in `a`) and `b_if`
/// (in `b`), both up, with the given MACs.
pub fn veth(
    a: &Netns,
    a_if: &str,
    a_mac: &str,
    b: &Netns,
    b_if: &str,
    b_mac: &str,
) -> io::Result<()> {
    // Created inside `a` so that no interface ever exists in the root namespace.
    a.ip(&[
        "link",
        "add",
        a_if,
        "address",
        a_mac,
        "type",
        "veth",
        "peer",
        "name",
        b_if,
        "address",
        b_mac,
        "netns",
        b.name(),
    ])?;
    a.ip(&["link", "set", a_if, "up"])?;
    b.ip(&["link", "set", b_if, "up"])?;
    Ok(())
}

/// One L2 segment: a bridge in a namespace of its own, to which hosts are
/// plugged with a veth each (`eth0` on the host side).
#[derive(Debug)]
pub struct Switch {
    ns: Netns,
    ports: u32,
}

impl Switch {
    /// A namespace holding bridge `br0`, up.
    pub fn new() -> io::Result<Switch> {
        let ns = Netns::new("sw")?;
        ns.ip(&["link", "add", "br0", "type", "bridge"])?;
        ns.ip(&["link", "set", "br0", "up"])?;
        Ok(Switch { ns, ports: 0 })
    }

    /// The switch's namespace (where the bridge ports live).
    pub fn ns(&self) -> &Netns {
        &self.ns
    }

    /// Plugs `host` in: its `eth0` (with `mac` and `addrs`, IPv6 ones
    /// without duplicate address detection) to a new bridge port, whose
    /// name is returned.
    pub fn plug(&mut self, host: &Netns, mac: &str, addrs: &[&str]) -> io::Result<String> {
        self.ports += 1;
        let port = format!("p{}", self.ports);
        veth(
            host,
            "eth0",
            mac,
            &self.ns,
            &port,
            &format!("02:00:00:00:0f:{:02x}", self.ports),
        )?;
        self.ns.ip(&["link", "set", &port, "master", "br0"])?;
        for addr in addrs {
            if addr.contains(':') {
                host.ip(&["addr", "add", addr, "dev", "eth0", "nodad"])?;
            } else {
                host.ip(&["addr", "add", addr, "dev", "eth0"])?;
            }
        }
        Ok(port)
    }
}

/// A process started in a namespace, killed (SIGTERM, then SIGKILL) on drop.
#[derive(Debug)]
pub struct Daemon {
    child: Child,
    log: PathBuf,
}

impl Daemon {
    /// The process's output so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log contains `needle` or the process exits.
    pub fn wait_for_log(&mut self, needle: &str, timeout: Duration) -> io::Result<()> {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if self.log().contains(needle) {
                return Ok(());
            }
            if let Some(status) = self.child.try_wait()? {
                return Err(io::Error::other(format!(
                    "exited with {status} before logging {needle:?}:\n{}",
                    self.log()
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(io::Error::other(format!(
            "no {needle:?} in the log after {timeout:?}:\n{}",
            self.log()
        )))
    }

    /// Sends a signal to the process (`ip netns exec` execs it, so the pid
    /// is the program's).
    pub fn signal(&self, sig: libc::c_int) -> io::Result<()> {
        // SAFETY: kill(2) on our own child's pid.
        if unsafe { libc::kill(self.child.id() as libc::pid_t, sig) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// The process's pid (`ip netns exec` execs the program, so it is the
    /// program's).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> io::Result<bool> {
        Ok(self.child.try_wait()?.is_none())
    }

    /// The exit status, if the process has exited.
    pub fn exited(&mut self) -> io::Result<Option<std::process::ExitStatus>> {
        self.child.try_wait()
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn stop(mut self) -> io::Result<std::process::ExitStatus> {
        self.signal(libc::SIGTERM)?;
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if let Some(s) = self.child.try_wait()? {
                return Ok(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(io::Error::other("did not exit within 10 s of SIGTERM"))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.signal(libc::SIGTERM);
            for _ in 0..100 {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Frames received on one interface of one namespace, captured with an
/// `AF_PACKET` socket from a thread inside the namespace.
#[derive(Debug)]
pub struct Capture {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<io::Result<Vec<Vec<u8>>>>>,
}

impl Capture {
    /// Starts capturing incoming frames on `ifname` in `ns`; returns once the
    /// socket is bound, so nothing sent afterwards is missed.
    pub fn start(ns: &Netns, ifname: &str) -> io::Result<Capture> {
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = mpsc::channel::<io::Result<()>>();
        let path = ns.path();
        let ifname = ifname.to_string();
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let sock = match enter(&path).and_then(|()| PacketSocket::bind(&ifname)) {
                Ok(s) => {
                    let _ = ready_tx.send(Ok(()));
                    s
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(io::Error::new(e.kind(), e.to_string())));
                    return Err(e);
                }
            };
            let mut frames = Vec::new();
            let mut buf = vec![0u8; 65536];
            loop {
                match sock.recv_incoming(&mut buf)? {
                    Some(n) => frames.push(buf[..n].to_vec()),
                    None if flag.load(Ordering::Relaxed) => return Ok(frames),
                    None => {}
                }
            }
        });
        ready_rx
            .recv()
            .map_err(|_| io::Error::other("capture thread ended before binding"))??;
        Ok(Capture {
            stop,
            handle: Some(handle),
        })
    }

    /// Stops after the socket has been idle for a moment and returns the
    /// frames, in arrival order.
    pub fn finish(mut self) -> io::Result<Vec<Vec<u8>>> {
        self.stop.store(true, Ordering::Relaxed);
        match self.handle.take() {
            Some(h) => h
                .join()
                .map_err(|_| io::Error::other("capture thread panicked"))?,
            None => Ok(Vec::new()),
        }
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Sends `frame` (Ethernet header included, as is) out of `ifname` in
/// `ns`, through an `AF_PACKET` socket: a host of the lab putting exact
/// bytes on the wire.
pub fn send_frame(ns: &Netns, ifname: &str, frame: &[u8]) -> io::Result<()> {
    let (ifname, frame) = (ifname.to_string(), frame.to_vec());
    ns.run_in(move || PacketSocket::bind(&ifname)?.send(&frame))
}

/// A raw `AF_PACKET` socket bound to one interface.
struct PacketSocket(std::os::fd::OwnedFd);

impl PacketSocket {
    fn bind(ifname: &str) -> io::Result<PacketSocket> {
        use std::os::fd::FromRawFd;
        let proto = (libc::ETH_P_ALL as u16).to_be();
        // SAFETY: plain socket(2); the fd is owned right away.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, i32::from(proto)) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh, valid descriptor that nothing else owns.
        let sock = PacketSocket(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) });
        let name = std::ffi::CString::new(ifname).map_err(io::Error::other)?;
        // SAFETY: a valid NUL-terminated name.
        let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
        if index == 0 {
            return Err(io::Error::other(format!("no interface {ifname}")));
        }
        // SAFETY: zeroed sockaddr_ll is a valid starting value.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = proto;
        addr.sll_ifindex = index as i32;
        let tv = libc::timeval {
            tv_sec: 0,
            tv_usec: 200_000,
        };
        let rcvbuf: libc::c_int = 16 << 20;
        // SAFETY: valid fd, pointers to live values of the sizes given.
        unsafe {
            if libc::bind(
                fd,
                (&addr as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            ) != 0
            {
                return Err(io::Error::last_os_error());
            }
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as u32,
            );
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVBUFFORCE,
                (&rcvbuf as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as u32,
            );
        }
        Ok(sock)
    }

    /// Sends one whole frame out of the interface.
    fn send(&self, frame: &[u8]) -> io::Result<()> {
        // SAFETY: a valid fd and a buffer of the length given.
        let n = unsafe { libc::send(self.0.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        if n as usize != frame.len() {
            return Err(io::Error::other(format!(
                "sent {n} of the frame's {} bytes",
                frame.len()
            )));
        }
        Ok(())
    }

    /// The next frame received (not sent) by the interface, or `None` after
    /// the timeout.
    fn recv_incoming(&self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        loop {
            // SAFETY: zeroed sockaddr_ll is valid; recvfrom writes within the sizes given.
            let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            let mut len = std::mem::size_of::<libc::sockaddr_ll>() as u32;
            // SAFETY: as above; `buf` outlives the call.
            let n = unsafe {
                libc::recvfrom(
                    self.0.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    0,
                    (&mut from as *mut libc::sockaddr_ll).cast(),
                    &mut len,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                return match e.kind() {
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Ok(None),
                    io::ErrorKind::Interrupted => continue,
                    _ => Err(e),
                };
            }
            if from.sll_pkttype == libc::PACKET_OUTGOING {
                continue;
            }
            return Ok(Some(n as usize));
        }
    }
}

/// The director object's pass-through XDP program, attached (native mode)
/// to an interface of a namespace for as long as this value lives: frames
/// sent with `XDP_TX` out of a veth reach the peer only when the peer runs
/// XDP.
#[derive(Debug)]
pub struct XdpPass {
    stop: Option<mpsc::Sender<()>>,
    handle: Option<JoinHandle<()>>,
}

impl XdpPass {
    /// Attaches it to `ifname` in `ns`.
    pub fn attach(ns: &Netns, ifname: &str) -> io::Result<XdpPass> {
        let (ready_tx, ready_rx) = mpsc::channel::<io::Result<()>>();
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        let path = ns.path();
        let ifname = ifname.to_string();
        let handle = std::thread::spawn(move || {
            let attached = (|| -> io::Result<aya::Ebpf> {
                enter(&path)?;
                let mut ebpf =
                    aya::Ebpf::load(director_xdp::director_object()).map_err(io::Error::other)?;
                let prog = director_xdp::load_xdp(&mut ebpf, director_xdp::PASS_PROGRAM)
                    .map_err(io::Error::other)?;
                let name = std::ffi::CString::new(ifname.as_str()).map_err(io::Error::other)?;
                prog.attach(name.as_c_str(), aya::programs::XdpMode::Driver)
                    .map_err(io::Error::other)?;
                Ok(ebpf)
            })();
            match attached {
                Ok(ebpf) => {
                    let _ = ready_tx.send(Ok(()));
                    // Held until stopped: dropping it detaches the program.
                    let _ = stop_rx.recv();
                    drop(ebpf);
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                }
            }
        });
        ready_rx
            .recv()
            .map_err(|_| io::Error::other("XDP attach thread ended early"))??;
        Ok(XdpPass {
            stop: Some(stop_tx),
            handle: Some(handle),
        })
    }
}

impl Drop for XdpPass {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// The id of the XDP program attached to `ifname` in `ns`, as
/// `ip -d link show` gives it (`prog/xdp id N`), if any.
pub fn xdp_prog_id(ns: &Netns, ifname: &str) -> Option<u32> {
    let out = ns.ip(&["-d", "link", "show", "dev", ifname]).ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let at = text.find("prog/xdp id ")?;
    text[at + 12..].split_whitespace().next()?.parse().ok()
}

/// Detaches the `bpf_link` that runs program `prog_id` (`BPF_LINK_DETACH`,
/// as `bpftool link detach` does): the program leaves its interface while
/// whoever holds the link (a process, a pin) keeps a defunct link.
pub fn detach_xdp_link(prog_id: u32) -> io::Result<()> {
    // enum bpf_cmd in include/uapi/linux/bpf.h.
    const BPF_LINK_GET_FD_BY_ID: libc::c_long = 30;
    const BPF_LINK_DETACH: libc::c_long = 34;
    let link_id = aya::programs::loaded_links()
        .filter_map(Result::ok)
        .find(|l| l.program_id() == prog_id)
        .map(|l| l.id())
        .ok_or_else(|| io::Error::other(format!("no bpf_link runs program {prog_id}")))?;
    let bpf = |cmd: libc::c_long, first: u32| -> io::Result<libc::c_long> {
        // union bpf_attr: both commands read one u32 at its start.
        let mut attr = [0u32; 32];
        attr[0] = first;
        // SAFETY: bpf(2) reads `size_of_val(&attr)` bytes of `attr`.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                cmd,
                attr.as_ptr(),
                std::mem::size_of_val(&attr) as libc::c_uint,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(rc)
    };
    let fd = bpf(BPF_LINK_GET_FD_BY_ID, link_id)?;
    let fd = u32::try_from(fd).map_err(io::Error::other)?;
    // SAFETY: the descriptor was just returned to this process.
    let _owned = unsafe {
        <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd as std::os::fd::RawFd)
    };
    bpf(BPF_LINK_DETACH, fd).map(|_| ())
}

/// Path of a binary of this workspace: next to the running executable (a
/// binary of this crate) or one level up (a test executable in `deps/`).
pub fn workspace_bin(name: &str) -> io::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let here = exe
        .parent()
        .ok_or_else(|| io::Error::other("no target directory"))?;
    for dir in [Some(here), here.parent()].into_iter().flatten() {
        let bin = dir.join(name);
        if bin.exists() {
            return Ok(bin);
        }
    }
    Err(io::Error::other(format!(
        "{name} is missing next to {}: run `cargo build -p {name}` (or `cargo test --workspace`)",
        exe.display()
    )))
}

/// A scratch directory removed on drop.
#[derive(Debug)]
pub struct Scratch(PathBuf);

impl Scratch {
    /// A fresh directory under the system temp dir.
    pub fn new(name: &str) -> io::Result<Scratch> {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("glbt-{name}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p)?;
        Ok(Scratch(p))
    }

    /// A path inside the directory.
    pub fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// For the lab benchmarks (`make bench`), which run long: blocks SIGINT,
/// SIGTERM and SIGHUP in every thread (threads started later inherit the
/// mask) and starts a thread that waits for them, then stops this
/// process's children (servers, load generators, daemons), deletes every
/// namespace [`Netns::new`] made for this process and exits. Call it
/// first, before any thread starts.
pub fn clean_up_on_signals(what: &'static str) -> io::Result<()> {
    // SAFETY: sigset_t is plain data, initialised by sigemptyset before use;
    // pthread_sigmask only changes the calling thread's mask.
    let set = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            libc::sigaddset(&mut set, sig);
        }
        if libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) != 0 {
            return Err(io::Error::other("pthread_sigmask failed"));
        }
        set
    };
    std::thread::spawn(move || {
        let mut sig: libc::c_int = 0;
        // SAFETY: `set` is a valid, initialised signal set; `sig` is live.
        if unsafe { libc::sigwait(&set, &mut sig) } != 0 {
            return;
        }
        let me = std::process::id();
        for child in children_of(me) {
            // SAFETY: kill(2) on a pid read from /proc; at worst ESRCH.
            unsafe { libc::kill(child as libc::pid_t, libc::SIGTERM) };
        }
        std::thread::sleep(Duration::from_millis(300));
        let infix = format!("-{me}-");
        if let Ok(list) = std::fs::read_dir("/run/netns") {
            for entry in list.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with("glbt-") && name.contains(&infix) {
                    let _ = Command::new("ip").args(["netns", "delete", &name]).output();
                }
            }
        }
        eprintln!("{what}: interrupted (signal {sig}), children stopped, namespaces removed");
        std::process::exit(128 + sig);
    });
    Ok(())
}

/// The pids whose parent is `pid` (from /proc/PID/stat).
fn children_of(pid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/stat"))
                .ok()
                .and_then(|s| {
                    // The field after the parenthesised command name: state, then ppid.
                    let rest = &s[s.rfind(')')? + 1..];
                    rest.split_whitespace().nth(1)?.parse::<u32>().ok()
                })
                == Some(pid)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_are_unique_isolated_and_removed_even_on_panic() {
        let a = Netns::new("selftest").unwrap();
        let b = Netns::new("selftest").unwrap();
        assert_ne!(a.name(), b.name());
        assert!(netns_exists(a.name()));
        // Inside, only loopback exists: no route out of the lab.
        let links = String::from_utf8(a.exec("ip", &["-o", "link"]).unwrap().stdout).unwrap();
        assert_eq!(links.lines().count(), 1, "{links}");
        let routes = String::from_utf8(a.exec("ip", &["route"]).unwrap().stdout).unwrap();
        assert_eq!(routes.trim(), "");
        let names = (a.name().to_string(), b.name().to_string());
        drop(a);
        assert!(!netns_exists(&names.0));
        let panicked = std::thread::spawn(move || {
            let _held = b;
            panic!("a failing test");
        })
        .join();
        assert!(panicked.is_err());
        assert!(!netns_exists(&names.1), "removed during unwinding");
    }

    #[test]
    fn capture_sees_frames_sent_across_a_veth() {
        let a = Netns::new("capa").unwrap();
        let b = Netns::new("capb").unwrap();
        veth(
            &a,
            "eth0",
            "02:00:00:00:aa:01",
            &b,
            "eth0",
            "02:00:00:00:aa:02",
        )
        .unwrap();
        a.ip(&["addr", "add", "192.0.2.1/24", "dev", "eth0"])
            .unwrap();
        b.ip(&["addr", "add", "192.0.2.2/24", "dev", "eth0"])
            .unwrap();
        b.add_neighbour("192.0.2.1", "02:00:00:00:aa:01").unwrap();
        let cap = Capture::start(&a, "eth0").unwrap();
        b.run_in(|| {
            let s = std::net::UdpSocket::bind("192.0.2.2:40000")?;
            for i in 0..5u8 {
                s.send_to(&[i], "192.0.2.1:9")?;
            }
            Ok(())
        })
        .unwrap();
        let frames = cap.finish().unwrap();
        let udp: Vec<&Vec<u8>> = frames
            .iter()
            .filter(|f| f.len() >= 43 && f[12..14] == [0x08, 0x00] && f[23] == 17)
            .collect();
        assert_eq!(udp.len(), 5, "{frames:?}");
        for (i, f) in udp.iter().enumerate() {
            assert_eq!(&f[0..6], &[2, 0, 0, 0, 0xaa, 0x01]);
            assert_eq!(f[42], i as u8);
        }
    }
}

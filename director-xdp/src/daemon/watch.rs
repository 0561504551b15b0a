//! The director's attachment to `director.interface`, watched
//! (docs/operations.md, "When the interface goes away").
//!
//! Under a running daemon the interface can be deleted, moved to another
//! network namespace or renamed, come back under a new index, or lose the
//! program (`BPF_LINK_DETACH`, as `bpftool link detach` does; `ip link set
//! dev X xdp off` is refused by the kernel while the link holds the
//! attachment, but works on kernels without XDP `bpf_link`). The daemon:
//!
//! - hears of it from link notifications ([`neigh::Notice::Link`]) and, for
//!   what sends none (a detached link), from its poll timer;
//! - reads the truth from the kernel whenever it answers for it:
//!   `/healthz`, `/metrics` and every API change read the interface by name
//!   and its XDP programs first ([`Watch::observe`]), so no answer rests on
//!   a state seen seconds ago, and no change is acknowledged while nothing
//!   runs it;
//! - attaches the program again as soon as an interface of the configured
//!   name runs without it (created again under a new index, or detached),
//!   pins the new link where the old one was, and follows the new index in
//!   next-hop resolution and notifications, and the interface's MTU;
//! - never exits because of it: a failed attach is retried at each
//!   notification and poll, and reported meanwhile.
//!
//! An interface that is down (administratively, or without carrier) keeps
//! its program: that is reported (`link_up`, `glb_director_interface_up`)
//! but is not a failure of the director, which forwards again as soon as
//! frames arrive.

use std::path::PathBuf;
use std::time::{Instant, SystemTime};

use anyhow::anyhow;
use aya::programs::XdpMode;
use aya::programs::xdp::{Xdp, XdpLink, XdpLinkId};
use director_xdp::dataplane::PathMtu;
use director_xdp::neigh::{self, LinkState, Watcher};
use tracing::{error, info, warn};

use super::{Daemon, POLL_INTERVAL, interface_mtu, pin_link, warn_if_above_link};
use crate::change::{Kind, Refusal};

/// The program's attachment to the interface, owned by the daemon.
pub(super) struct Attachment {
    /// Dropping it detaches the program, unless the link is pinned.
    #[expect(dead_code, reason = "held for what dropping it does")]
    pub(super) link: XdpLink,
    /// The interface it was attached to.
    pub(super) ifindex: u32,
    /// Whether the link is pinned (at [`Watch::link_path`]).
    pub(super) pinned: bool,
}

/// What is wrong with the data plane.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Problem {
    /// The kernel could not be asked (netlink failed).
    Unobservable(String),
    /// No interface of the configured name.
    InterfaceMissing,
    /// An interface of the configured name exists, but it is not the one
    /// the program was attached to (created again, or another one renamed).
    InterfaceReplaced { ifindex: u32, was: u32 },
    /// The interface runs other XDP programs than the director's, or none.
    ProgramDetached { ifindex: u32, found: Vec<u32> },
    /// Attaching the program to the interface failed.
    AttachFailed { ifindex: u32, error: String },
}

impl Problem {
    /// The name `/healthz` gives it.
    pub(super) fn kind(&self) -> &'static str {
        match self {
            Problem::Unobservable(_) => "unobservable",
            Problem::InterfaceMissing => "interface_missing",
            Problem::InterfaceReplaced { .. } => "interface_replaced",
            Problem::ProgramDetached { .. } => "program_detached",
            Problem::AttachFailed { .. } => "attach_failed",
        }
    }

    /// One sentence about it, naming the interface.
    pub(super) fn describe(&self, interface: &str) -> String {
        match self {
            Problem::Unobservable(e) => {
                format!("cannot read interface {interface} from the kernel: {e}")
            }
            Problem::InterfaceMissing => format!(
                "interface {interface} is gone (deleted, renamed or moved to another network namespace); the director is attached again when an interface of that name returns"
            ),
            Problem::InterfaceReplaced { ifindex, was } => format!(
                "interface {interface} was created again (ifindex {ifindex}; the director was attached to ifindex {was})"
            ),
            Problem::ProgramDetached { ifindex, found } => format!(
                "the director's program is no longer attached to {interface} (ifindex {ifindex}, which runs {})",
                if found.is_empty() {
                    "no XDP program".to_string()
                } else {
                    let ids: Vec<String> = found.iter().map(u32::to_string).collect();
                    format!("XDP program {}", ids.join(", "))
                }
            ),
            Problem::AttachFailed { ifindex, error } => format!(
                "attaching the director to {interface} (ifindex {ifindex}) failed: {error}; retried every {} s and at each change of the interface",
                POLL_INTERVAL.as_secs()
            ),
        }
    }

    /// The interface to attach the program to again, when that may fix
    /// it (an interface of the configured name exists).
    fn repair_on(&self) -> Option<u32> {
        match self {
            Problem::Unobservable(_) | Problem::InterfaceMissing => None,
            Problem::InterfaceReplaced { ifindex, .. }
            | Problem::ProgramDetached { ifindex, .. }
            | Problem::AttachFailed { ifindex, .. } => Some(*ifindex),
        }
    }
}

/// What is wrong, given the attachment (the interface index it was made
/// on, if the daemon holds one), the director's program id, the interface
/// as the kernel shows it now, and the error of the last attach, if it
/// failed.
pub(super) fn diagnose(
    attached_to: Option<u32>,
    program: u32,
    link: Option<&LinkState>,
    attach_error: Option<&str>,
) -> Option<Problem> {
    let Some(link) = link else {
        return Some(Problem::InterfaceMissing);
    };
    let detached = || Problem::ProgramDetached {
        ifindex: link.ifindex,
        found: link.xdp_programs.clone(),
    };
    match attached_to {
        None => Some(match attach_error {
            Some(e) => Problem::AttachFailed {
                ifindex: link.ifindex,
                error: e.to_string(),
            },
            None => detached(),
        }),
        Some(was) if was != link.ifindex => Some(Problem::InterfaceReplaced {
            ifindex: link.ifindex,
            was,
        }),
        Some(_) if !link.xdp_programs.contains(&program) => Some(detached()),
        Some(_) => None,
    }
}

/// The interface and the problem, read now.
pub(super) struct Status {
    pub(super) link: Option<LinkState>,
    pub(super) problem: Option<Problem>,
}

/// The attachment and what the daemon last said about it.
pub(super) struct Watch {
    /// `director.interface`.
    pub(super) interface: String,
    /// Where the link is pinned (`director.pin_dir`/link).
    link_path: PathBuf,
    /// The director program's id (the same for every attachment: the
    /// program stays loaded).
    program: u32,
    attachment: Option<Attachment>,
    /// Why the last attach failed, if it did.
    attach_error: Option<String>,
    /// The problem as last logged, and since when.
    reported: Option<(Problem, Instant)>,
    /// Whether the interface was up, as last logged.
    link_up: Option<bool>,
    /// Attachments made since start, the first excepted.
    reattached: u64,
    /// Link, route and neighbour notifications.
    watcher: Watcher,
}

impl Watch {
    pub(super) fn new(interface: String, link_path: PathBuf, watcher: Watcher) -> Watch {
        Watch {
            interface,
            link_path,
            program: 0,
            attachment: None,
            attach_error: None,
            reported: None,
            link_up: None,
            reattached: 0,
            watcher,
        }
    }

    /// The start's attachment of program `program`.
    pub(super) fn attached(&mut self, attachment: Attachment, program: u32) {
        self.program = program;
        self.attachment = Some(attachment);
        // Logs it if it is down already.
        self.link_up = Some(true);
        let link = neigh::link_state(&self.interface).ok().flatten();
        self.report_link(link.as_ref());
    }

    /// Gives the attachment up (the daemon stops).
    /// Whether the program's link is pinned (a restart adopts it).
    pub(super) fn is_pinned(&self) -> bool {
        self.attachment.as_ref().is_some_and(|a| a.pinned)
    }

    pub(super) fn take(&mut self) -> Option<Attachment> {
        self.attachment.take()
    }

    /// Reads the interface from the kernel and tells what is wrong.
    pub(super) fn observe(&self) -> Status {
        match neigh::link_state(&self.interface) {
            Err(e) => Status {
                link: None,
                problem: Some(Problem::Unobservable(e.to_string())),
            },
            Ok(link) => Status {
                problem: diagnose(
                    self.attachment.as_ref().map(|a| a.ifindex),
                    self.program,
                    link.as_ref(),
                    self.attach_error.as_deref(),
                ),
                link,
            },
        }
    }

    /// Whether nothing was wrong when the event loop last looked (true
    /// during the start too): next hops are not resolved otherwise.
    pub(super) fn looks_attached(&self) -> bool {
        self.reported.is_none()
    }

    /// Logs `problem` if it is not the one last logged.
    fn report(&mut self, problem: Option<&Problem>) {
        let same = match (&self.reported, problem) {
            (Some((old, _)), Some(new)) => old == new,
            (None, None) => true,
            _ => false,
        };
        if same {
            return;
        }
        match problem {
            Some(p) => {
                let refused = "/healthz answers 503 and API changes are refused until the director is attached again";
                let text = p.describe(&self.interface);
                match p {
                    // The interface came back: attached at once.
                    Problem::InterfaceReplaced { .. } => {
                        warn!(problem = p.kind(), "{text}; attaching the director to it");
                    }
                    Problem::ProgramDetached { .. } => {
                        error!(problem = p.kind(), "{text}; attaching it again");
                    }
                    _ => error!(problem = p.kind(), "{text}; {refused}"),
                }
                let since = self
                    .reported
                    .as_ref()
                    .map_or_else(Instant::now, |(_, at)| *at);
                self.reported = Some((p.clone(), since));
            }
            None => {
                if let Some((_, since)) = self.reported.take() {
                    info!(
                        "the director is attached to {} (a problem noticed {:.1} s before is gone)",
                        self.interface,
                        since.elapsed().as_secs_f64()
                    );
                }
            }
        }
    }

    /// Logs the interface going down or up.
    fn report_link(&mut self, link: Option<&LinkState>) {
        let Some(link) = link else {
            self.link_up = None;
            return;
        };
        let up = link.up();
        if self.link_up == Some(up) {
            return;
        }
        if up {
            info!("interface {} is up", self.interface);
        } else {
            warn!(
                admin_up = link.admin_up,
                running = link.running,
                "interface {} is down ({}): the director stays attached and forwards again when it is up",
                self.interface,
                if link.admin_up {
                    "no carrier"
                } else {
                    "set down"
                }
            );
        }
        self.link_up = Some(up);
    }
}

/// Attaches `program` in native mode, else in generic mode; returns the
/// link, the mode's name and why native mode failed, if it did. Logs
/// nothing: the caller logs once per outcome.
fn attach_quietly(
    program: &mut Xdp,
    ifindex: u32,
) -> anyhow::Result<(XdpLinkId, &'static str, Option<String>)> {
    match program.attach(ifindex, XdpMode::Driver) {
        Ok(id) => Ok((id, "native", None)),
        Err(native) => {
            let native = format!("{:#}", anyhow::Error::from(native));
            match program.attach(ifindex, XdpMode::Skb) {
                Ok(id) => Ok((id, "generic", Some(native))),
                Err(generic) => Err(anyhow!(
                    "native mode: {native}; generic mode: {:#}",
                    anyhow::Error::from(generic)
                )),
            }
        }
    }
}

impl Daemon {
    /// Reads the interface and the attachment, logs what changed, and
    /// attaches the program again when an interface of the configured name
    /// runs without it. Runs on link notifications and on the poll timer.
    pub(super) fn watch_dataplane(&mut self) {
        let status = self.watch.observe();
        self.watch.report_link(status.link.as_ref());
        self.watch.report(status.problem.as_ref());
        if let Some(ifindex) = status.problem.as_ref().and_then(Problem::repair_on) {
            self.attach_again(ifindex);
        }
    }

    /// Attaches the program to interface `ifindex` (the configured one, as
    /// it is now) in place of the attachment held, pins the new link, and
    /// follows the new index.
    fn attach_again(&mut self, ifindex: u32) {
        let interface = self.watch.interface.clone();
        // The old link runs nowhere, or on an interface that no longer has
        // the configured name: closing it and its pin releases it.
        drop(self.watch.attachment.take());
        match std::fs::remove_file(&self.watch.link_path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => warn!(
                "removing the old link's pin {}: {e}",
                self.watch.link_path.display()
            ),
        }
        let attached =
            attach_quietly(self.dataplane.program_mut(), ifindex).and_then(|(id, mode, native)| {
                match pin_link(&mut self.dataplane, id, &self.watch.link_path, ifindex, mode) {
                    Ok((link, pinned)) => Ok((link, pinned, mode, native)),
                    // The failed pin took the link with it. Forwarding
                    // matters more than a hitless restart: attach unpinned.
                    Err(e) => {
                        warn!(
                            "{e:#}: attaching the director to {interface} unpinned; a restart will not be hitless (restart the daemon once the pin directory is usable)"
                        );
                        let program = self.dataplane.program_mut();
                        let (id, mode, native) = attach_quietly(program, ifindex)?;
                        Ok((program.take_link(id)?, false, mode, native))
                    }
                }
            });
        let (link, pinned, mode, native) = match attached {
            Ok(a) => a,
            Err(e) => {
                let error = format!("{e:#}");
                self.watch.attach_error = Some(error.clone());
                self.watch
                    .report(Some(&Problem::AttachFailed { ifindex, error }));
                return;
            }
        };
        if let Some(native) = native {
            warn!(
                "native XDP on {interface} failed ({native}); attached in generic (SKB) mode, which is much slower"
            );
        }
        self.watch.attachment = Some(Attachment {
            link,
            ifindex,
            pinned,
        });
        self.watch.attach_error = None;
        self.watch.reattached += 1;
        let was = self
            .watch
            .reported
            .take()
            .map(|(p, since)| (p.kind(), since.elapsed()));
        self.resolver.set_ifindex(ifindex);
        self.watch.watcher.set_ifindex(ifindex);
        info!(
            interface = %interface,
            ifindex,
            mode,
            "director attached again to {interface} (ifindex {ifindex}) in {mode} mode{}{}",
            if pinned {
                format!("; link pinned at {}", self.watch.link_path.display())
            } else {
                String::new()
            },
            was.map_or_else(String::new, |(kind, d)| format!(
                "; without a director for {:.1} s since noticed (last problem: {kind})",
                d.as_secs_f64()
            ))
        );
        self.follow_link_mtu(&interface);
        self.refresh();
        self.probe_unresolved();
    }

    /// Reads the MTU of the interface (a new one may have another) and,
    /// when the path MTU comes from it, writes the new value.
    fn follow_link_mtu(&mut self, interface: &str) {
        let mtu = match interface_mtu(interface) {
            Ok(mtu) => mtu,
            Err(e) => {
                warn!("keeping the last MTU read: {e:#}");
                return;
            }
        };
        let before = self.dataplane.path_mtu(&self.config);
        self.dataplane.set_link_mtu(interface, mtu);
        warn_if_above_link(&self.config, interface, mtu);
        let after = self.dataplane.path_mtu(&self.config);
        if !matches!(after, PathMtu::Interface { .. }) || after.value() == before.value() {
            return;
        }
        let snapshot = self.snapshot.clone();
        match self
            .dataplane
            .apply(&self.config, &|ip| snapshot.mac_of(ip))
        {
            Ok(_) => info!(
                "path MTU {} (interface {interface}, which was {})",
                after.value(),
                before.value()
            ),
            Err(e) => error!(
                "writing the path MTU of {interface} ({mtu}): {:#}; send SIGHUP to retry",
                anyhow::Error::from(e)
            ),
        }
    }

    /// `GET /healthz`: 200 while the program is attached to the
    /// interface, else 503 naming the problem.
    pub(crate) fn healthz(&self) -> (bool, proto::api::Healthz) {
        let status = self.watch.observe();
        let link = status.link.as_ref();
        let mut h = proto::api::Healthz {
            status: "ok".to_string(),
            generation: self.generation,
            interface: self.watch.interface.clone(),
            ifindex: link.map(|l| l.ifindex),
            attached: status.problem.is_none(),
            link_up: link.is_some_and(LinkState::up),
            reattached: self.watch.reattached,
            problem: None,
            error: None,
        };
        match &status.problem {
            None => (true, h),
            Some(p) => {
                h.status = "detached".to_string();
                h.problem = Some(p.kind().to_string());
                h.error = Some(p.describe(&self.watch.interface));
                (false, h)
            }
        }
    }

    /// Refuses a change (503) while the program is not attached: nothing
    /// would carry it, and the client must not believe it is live.
    pub(crate) fn refuse_unless_attached(&self) -> Result<(), Refusal> {
        match self.watch.observe().problem {
            None => Ok(()),
            Some(p) => Err(Refusal::new(
                Kind::Unavailable,
                format!(
                    "no director program is attached to {}: {}; the change was not made (nothing applied, nothing written): retry once /healthz answers 200",
                    self.watch.interface,
                    p.describe(&self.watch.interface)
                ),
            )),
        }
    }

    /// The attachment's metrics, for [`Daemon::metrics`].
    pub(super) fn attachment_metrics(&self, m: &mut super::metrics::Metrics) {
        let status = self.watch.observe();
        m.single_gauge(
            "glb_director_dataplane_attached",
            "1 if the director's program is attached to its interface (0: the interface is gone, or the program was detached; /healthz says why)",
            u64::from(status.problem.is_none()),
        );
        m.single_gauge(
            "glb_director_interface_up",
            "1 if the director's interface exists, is up and has carrier",
            u64::from(status.link.as_ref().is_some_and(LinkState::up)),
        );
        m.single_counter(
            "glb_director_reattached",
            "Times the program was attached again (the interface returned, or the program had been detached)",
            self.watch.reattached,
        );
        if let Some((_, since)) = &self.watch.reported {
            let at = SystemTime::now()
                .checked_sub(since.elapsed())
                .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_secs());
            m.single_gauge(
                "glb_director_detached_since_timestamp_seconds",
                "When the current loss of the attachment was noticed (Unix time); absent while attached",
                at,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(ifindex: u32, programs: &[u32]) -> LinkState {
        LinkState {
            ifindex,
            name: Some("eth0".into()),
            admin_up: true,
            running: true,
            xdp_programs: programs.to_vec(),
        }
    }

    #[test]
    fn attached_when_the_interface_runs_the_program() {
        assert_eq!(diagnose(Some(4), 31, Some(&link(4, &[31])), None), None);
        // Another program in another mode beside it changes nothing.
        assert_eq!(diagnose(Some(4), 31, Some(&link(4, &[9, 31])), None), None);
    }

    #[test]
    fn each_loss_is_named() {
        assert_eq!(
            diagnose(Some(4), 31, None, None),
            Some(Problem::InterfaceMissing)
        );
        assert_eq!(
            diagnose(Some(4), 31, Some(&link(7, &[])), None),
            Some(Problem::InterfaceReplaced { ifindex: 7, was: 4 })
        );
        assert_eq!(
            diagnose(Some(4), 31, Some(&link(4, &[])), None),
            Some(Problem::ProgramDetached {
                ifindex: 4,
                found: vec![]
            })
        );
        assert_eq!(
            diagnose(Some(4), 31, Some(&link(4, &[12])), None),
            Some(Problem::ProgramDetached {
                ifindex: 4,
                found: vec![12]
            })
        );
        assert_eq!(
            diagnose(None, 31, Some(&link(7, &[12])), Some("busy")),
            Some(Problem::AttachFailed {
                ifindex: 7,
                error: "busy".into()
            })
        );
        // Gone again after a failed attach: missing, not failed.
        assert_eq!(
            diagnose(None, 31, None, Some("busy")),
            Some(Problem::InterfaceMissing)
        );
    }

    #[test]
    fn only_an_existing_interface_is_attached_to_again() {
        assert_eq!(Problem::InterfaceMissing.repair_on(), None);
        assert_eq!(Problem::Unobservable("x".into()).repair_on(), None);
        assert_eq!(
            Problem::InterfaceReplaced { ifindex: 7, was: 4 }.repair_on(),
            Some(7)
        );
        assert_eq!(
            Problem::ProgramDetached {
                ifindex: 4,
                found: vec![12]
            }
            .repair_on(),
            Some(4)
        );
        let d = Problem::ProgramDetached {
            ifindex: 4,
            found: vec![12, 13],
        }
        .describe("eth0");
        assert!(
            d.contains("no longer attached to eth0") && d.contains("XDP program 12, 13"),
            "{d}"
        );
    }
}

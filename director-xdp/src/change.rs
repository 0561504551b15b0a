//! What a change to the director's tables is, and why one is refused:
//! the vocabulary the daemon ([`crate::daemon`], which owns the config,
//! the tables and the data plane) and its HTTP front ([`crate::api`],
//! which maps requests to changes and refusals to status codes) share,
//! so that neither imports the other's internals.

use std::net::IpAddr;

use proto::config::{BackendConfig, Config, SHOWN_MAX, shorten};
use proto::table::{Backend, BackendState};
use serde_json::Value;

/// What kind of refusal: the HTTP front gives each its status code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Malformed: a bad field, value or parameter (400).
    Invalid,
    /// No such table or backend (404).
    NotFound,
    /// Well formed, but the tables cannot take it (409).
    Conflict,
    /// Nothing can carry it now (no program attached; 503).
    Unavailable,
    /// The data plane or a file write failed (500).
    Internal,
}

/// A refused or failed change: what kind, why, and the field and value at
/// fault.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{message}")]
pub(crate) struct Refusal {
    /// What kind.
    pub kind: Kind,
    /// Why, for a person.
    pub message: String,
    /// The field at fault and its value, both cut to what a message may
    /// repeat.
    pub field: Option<(String, Value)>,
}

impl Refusal {
    pub(crate) fn new(kind: Kind, message: impl Into<String>) -> Refusal {
        Refusal {
            kind,
            message: message.into(),
            field: None,
        }
    }

    pub(crate) fn conflict(message: impl Into<String>) -> Refusal {
        Refusal::new(Kind::Conflict, message)
    }

    pub(crate) fn internal(message: impl Into<String>) -> Refusal {
        Refusal::new(Kind::Internal, message)
    }

    /// Names the field and value at fault, both cut to what a message may
    /// repeat ([`shorten`]): a 20 MB value is not echoed back.
    pub(crate) fn at(mut self, field: &str, value: impl Into<Value>) -> Refusal {
        let value = match value.into() {
            Value::String(s) => Value::String(shorten(&s)),
            v @ (Value::Array(_) | Value::Object(_)) => {
                let text = v.to_string();
                if text.chars().count() > SHOWN_MAX {
                    Value::String(shorten(&text))
                } else {
                    v
                }
            }
            v => v,
        };
        self.field = Some((shorten(field), value));
        self
    }
}

/// A change to one table.
#[derive(Clone, Debug)]
pub(crate) enum Change {
    Add(BackendConfig),
    Remove { ip: IpAddr, force: bool },
    SetState { ip: IpAddr, state: BackendState },
    SetHealth { ip: IpAddr, health: Health },
}

/// A health verdict: what it sets (at least one of the two).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Health {
    /// false: takes no new flows, keeps its established ones.
    pub healthy: Option<bool>,
    /// false: in no row (nothing can be rescued there).
    pub reachable: Option<bool>,
}

impl Health {
    /// Sets what it says on `b`; whether that changed anything.
    pub(crate) fn apply(self, b: &mut Backend) -> bool {
        let before = (b.healthy, b.reachable);
        b.healthy = self.healthy.unwrap_or(b.healthy);
        b.reachable = self.reachable.unwrap_or(b.reachable);
        before != (b.healthy, b.reachable)
    }
}

/// The config with `change` made to table `table` (index `ti`), not yet
/// checked as a whole. Returns whether anything changed.
pub(crate) fn changed_config(
    config: &Config,
    ti: usize,
    change: &Change,
) -> Result<(Config, bool), Refusal> {
    let mut new = config.clone();
    let t = &mut new.tables[ti];
    let name = t.name.clone();
    let find = |t: &proto::config::Table, ip: IpAddr| {
        t.backends
            .iter()
            .position(|b| b.backend.addr == ip)
            .ok_or_else(|| {
                Refusal::new(
                    Kind::NotFound,
                    format!("table \"{name}\" has no backend {ip}"),
                )
                .at("ip", ip.to_string())
            })
    };
    let changed = match change {
        Change::Add(b) => {
            if t.backends.iter().any(|x| x.backend.addr == b.backend.addr) {
                return Err(Refusal::conflict(format!(
                    "table \"{name}\" already has backend {}",
                    b.backend.addr
                ))
                .at("ip", b.backend.addr.to_string()));
            }
            t.backends.push(b.clone());
            true
        }
        Change::Remove { ip, force } => {
            let i = find(t, *ip)?;
            let state = t.backends[i].backend.state;
            if state != BackendState::Inactive && !force {
                return Err(Refusal::conflict(format!(
                    "backend {ip} is {state}: deactivate it first (drain it and wait for its flows to end), or remove it with ?force=true"
                ))
                .at("ip", ip.to_string()));
            }
            t.backends.remove(i);
            true
        }
        Change::SetState { ip, state } => {
            let i = find(t, *ip)?;
            let b = &mut t.backends[i].backend;
            let changed = b.state != *state;
            b.state = *state;
            changed
        }
        Change::SetHealth { ip, health } => {
            let i = find(t, *ip)?;
            health.apply(&mut t.backends[i].backend)
        }
    };
    Ok((new, changed))
}

/// Checks a changed config whole, exactly as if it were read from the file
/// (so the file written next will load). A refusal is a conflict: the
/// request was well formed, but the table cannot take the change.
pub(crate) fn check_whole(new: &Config, change: &Change) -> Result<Config, Refusal> {
    let text = proto::config::to_json(new).to_string();
    Config::from_json(&text).map_err(|e| {
        let ip = match change {
            Change::Add(b) => b.backend.addr,
            Change::Remove { ip, .. }
            | Change::SetState { ip, .. }
            | Change::SetHealth { ip, .. } => *ip,
        };
        Refusal::conflict(format!("the change is refused: {e}")).at("ip", ip.to_string())
    })
}

/// One health verdict for [`crate::daemon::Daemon::set_health`].
#[derive(Clone, Debug)]
pub(crate) struct HealthVerdict {
    /// The table, by index.
    pub table: usize,
    /// The backend, which the table has.
    pub ip: IpAddr,
    /// What it sets.
    pub health: Health,
    /// Why.
    pub reason: Option<String>,
}

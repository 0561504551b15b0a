//! The director's HTTP API as types: what every call takes and answers
//! (docs/api.md), shared by the daemon that serves it, `director-ctl`, the
//! health checker and the tests, so that a change of shape breaks the build
//! rather than a client at run time.
//!
//! Plain data with serde derive: nothing here knows about HTTP clients or
//! servers. [`path`] builds request paths with their segments escaped.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::de::given;
use crate::table::{BackendState, RowDiff};

/// The body of every refusal (4xx and 5xx).
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What is wrong, for a person.
    pub error: String,
    /// The field (or path segment, header, query parameter) at fault.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// The value at fault as it was given (cut when long); present, maybe
    /// `null`, whenever `field` is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
}

/// `GET /healthz`: 200 while the director's program is attached to its
/// interface, 503 (same shape) otherwise.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Healthz {
    /// `"ok"`, or `"detached"`.
    pub status: String,
    /// Configs applied since the daemon started.
    pub generation: u64,
    /// `director.interface`.
    pub interface: String,
    /// Its index now, if it exists.
    pub ifindex: Option<u32>,
    /// Whether the program is attached to it.
    pub attached: bool,
    /// Whether the interface is up (a down interface keeps its program).
    pub link_up: bool,
    /// Times the program was attached again since the daemon started.
    pub reattached: u64,
    /// While detached: what is wrong (`interface_missing`,
    /// `interface_replaced`, `program_detached`, `attach_failed`,
    /// `unobservable`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    /// While detached: the problem, for a person.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `GET /v1/tables`.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Tables {
    /// Configs applied since the daemon started.
    pub generation: u64,
    /// Every table, in config order.
    pub tables: Vec<Table>,
}

/// One table as the director holds it (`GET /v1/tables/{name}`).
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Table {
    /// Its name.
    pub name: String,
    /// Alternates per row (GUE); an `ipip` table carries none.
    pub hops: u8,
    /// How its packets are wrapped for the backends.
    pub encap: crate::Encap,
    /// Rows (65,536 once built).
    pub rows: usize,
    /// Content hash of the rows (`proto::table::content_hash`); `null`
    /// before the table is built.
    pub hash: Option<String>,
    /// Its binds with their traffic.
    pub binds: Vec<BindTraffic>,
    /// Its backends, in config order.
    pub backends: Vec<Backend>,
}

/// A bind of a table and what it received.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BindTraffic {
    /// The bind (`203.0.113.10:80/tcp`).
    pub bind: String,
    /// Its id in the data plane.
    pub id: u32,
    /// Packets matched.
    pub packets: u64,
    /// Their bytes (frames as received).
    pub bytes: u64,
}

/// A backend of a table: intent, health, place in the rows, traffic.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Backend {
    /// Its address.
    pub ip: IpAddr,
    /// The operator's intent.
    pub state: BackendState,
    /// false: takes no new flows.
    pub healthy: bool,
    /// false: in no row.
    pub reachable: bool,
    /// Why the last health verdict was given, if a reason came with it.
    pub health_reason: Option<String>,
    /// Rows with it as primary.
    pub rows_primary: u64,
    /// Rows with it as an alternate (a row counts once).
    pub rows_alternate: u64,
    /// Packets encapsulated to it as primary.
    pub packets: u64,
    /// Their bytes.
    pub bytes: u64,
    /// The config's health checks, as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthchecks: Option<Value>,
}

/// The answer to a change.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Change {
    /// Whether anything changed (the same drain twice changes nothing).
    pub changed: bool,
    /// Configs applied since the daemon started.
    pub generation: u64,
    /// The table after the change.
    pub table: Table,
    /// What the operator must know about the change made: in an `ipip`
    /// table (no second chance), the rows whose established flows it
    /// moved (as [`Preview`]'s warnings; the rows are in its `lost`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// `POST /v1/tables/{name}/backends`.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddBackend {
    /// Its address.
    pub ip: IpAddr,
    /// Default `active`.
    #[serde(
        default,
        deserialize_with = "given",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(feature = "schema", schemars(with = "BackendState"))]
    pub state: Option<BackendState>,
    /// Default true.
    #[serde(
        default,
        deserialize_with = "given",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(feature = "schema", schemars(with = "bool"))]
    pub healthy: Option<bool>,
    /// Default true.
    #[serde(
        default,
        deserialize_with = "given",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(feature = "schema", schemars(with = "bool"))]
    pub reachable: Option<bool>,
    /// Kept in the config for the health checker.
    #[serde(
        default,
        deserialize_with = "given",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(feature = "schema", schemars(with = "Map<String, Value>"))]
    pub healthchecks: Option<Map<String, Value>>,
}

/// `PUT /v1/tables/{name}/backends/{ip}/health`: at least one of the two
/// flags.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetHealth {
    /// false: no new flows.
    #[serde(
        default,
        deserialize_with = "given",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(feature = "schema", schemars(with = "bool"))]
    pub healthy: Option<bool>,
    /// false: in no row.
    #[serde(
        default,
        deserialize_with = "given",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(feature = "schema", schemars(with = "bool"))]
    pub reachable: Option<bool>,
    /// Why (at most 1024 bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `PUT /v1/health`: health verdicts for many backends of any tables,
/// applied as one change (each table flips once), as the health checker
/// pushes them. Verdicts are runtime state, kept beside the config, not in
/// it.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthBatch {
    /// The verdicts, at most one per (table, backend).
    pub verdicts: Vec<Verdict>,
}

/// One backend's health verdict in a [`HealthBatch`].
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Verdict {
    /// The table.
    pub table: String,
    /// The backend.
    pub ip: IpAddr,
    /// false: no new flows (at least one of `healthy` and `reachable`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthy: Option<bool>,
    /// false: in no row.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reachable: Option<bool>,
    /// Why (at most 1024 bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The answer to a [`HealthBatch`].
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthBatchAnswer {
    /// Whether any table changed.
    pub changed: bool,
    /// Configs applied since the daemon started.
    pub generation: u64,
    /// Verdicts that named a table or backend this director does not have
    /// (a fleet's directors may differ for a moment): skipped, the others
    /// applied.
    pub unknown: Vec<TableBackend>,
    /// Content hash of every table after the change, by name.
    pub hashes: BTreeMap<String, Option<String>>,
}

/// A backend of a table.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TableBackend {
    /// The table.
    pub table: String,
    /// The backend.
    pub ip: IpAddr,
}

/// A state change by path (`POST .../{ip}/drain` and its siblings).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StateAction {
    /// `draining`.
    Drain,
    /// `filling`.
    Fill,
    /// `active`.
    Activate,
    /// `inactive`.
    Deactivate,
}

impl StateAction {
    /// Every action.
    pub const ALL: [StateAction; 4] = [
        StateAction::Drain,
        StateAction::Fill,
        StateAction::Activate,
        StateAction::Deactivate,
    ];

    /// The last path segment (and the preview's `action`).
    pub fn as_str(self) -> &'static str {
        match self {
            StateAction::Drain => "drain",
            StateAction::Fill => "fill",
            StateAction::Activate => "activate",
            StateAction::Deactivate => "deactivate",
        }
    }

    /// The state it sets.
    pub fn state(self) -> BackendState {
        match self {
            StateAction::Drain => BackendState::Draining,
            StateAction::Fill => BackendState::Filling,
            StateAction::Activate => BackendState::Active,
            StateAction::Deactivate => BackendState::Inactive,
        }
    }
}

/// `POST /v1/tables/{name}/preview`: a change, not applied.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "lowercase")]
pub enum Proposal {
    /// Add a backend.
    Add(AddBackend),
    /// Remove one (previewed as if forced).
    Remove(Target),
    /// `draining`.
    Drain(Target),
    /// `filling`.
    Fill(Target),
    /// `active`.
    Activate(Target),
    /// `inactive`.
    Deactivate(Target),
    /// A health verdict.
    Health(ProposedHealth),
}

/// The backend of a [`Proposal`] that names one.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// The backend.
    pub ip: IpAddr,
}

/// A health verdict of a [`Proposal`]: at least one of the two flags.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProposedHealth {
    /// The backend.
    pub ip: IpAddr,
    /// false: no new flows.
    #[serde(
        default,
        deserialize_with = "given",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(feature = "schema", schemars(with = "bool"))]
    pub healthy: Option<bool>,
    /// false: in no row.
    #[serde(
        default,
        deserialize_with = "given",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(feature = "schema", schemars(with = "bool"))]
    pub reachable: Option<bool>,
}

/// The answer to a preview: what the change would do to the rows.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Preview {
    /// The table.
    pub table: String,
    /// Rows moved and lost, per backend.
    #[serde(flatten)]
    pub diff: RowDiff,
    /// The content hash now.
    pub hash_before: Option<String>,
    /// The content hash the change would give.
    pub hash_after: String,
}

/// `GET /v1/stats`.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// Configs applied since the daemon started.
    pub generation: u64,
    /// The director's counters by outcome name.
    pub outcomes: BTreeMap<String, u64>,
    /// Every bind's traffic.
    pub binds: Vec<TableBindTraffic>,
    /// Every backend's traffic as primary.
    pub backends: Vec<BackendTraffic>,
    /// The path MTU toward the backends the director applies (`None`: no
    /// limit).
    pub path_mtu: Option<u32>,
    /// The last config applied or refused.
    pub last_apply: Option<LastApply>,
}

/// A bind's traffic, with its table.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableBindTraffic {
    /// The table.
    pub table: String,
    /// The bind and its traffic.
    #[serde(flatten)]
    pub traffic: BindTraffic,
}

/// A backend's traffic as primary.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendTraffic {
    /// The table.
    pub table: String,
    /// The backend.
    pub backend: IpAddr,
    /// Packets encapsulated to it.
    pub packets: u64,
    /// Their bytes.
    pub bytes: u64,
}

/// The last config applied (or refused), and by what.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastApply {
    /// `start`, `sighup` or `api`.
    pub source: String,
    /// Whether it was applied.
    pub ok: bool,
    /// Why not.
    pub error: Option<String>,
    /// When, in seconds since the Unix epoch.
    pub unix_time: u64,
}

/// `GET /v1/director`, and the answer of `POST /v1/director/drain` and
/// `/undrain`: the director as a member of a fleet.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectorStatus {
    /// Whether the program is attached to the interface.
    pub attached: bool,
    /// Whether the director is drained: its VIPs are withdrawn, and what
    /// still arrives is forwarded.
    pub drained: bool,
    /// Packets for a VIP the program has handled since it was loaded
    /// (encapsulated, answered or dropped as too big, failed): once
    /// drained, this stops growing when the routers have moved away.
    pub vip_packets: u64,
    /// The VIP announcements.
    pub bgp: Bgp,
}

/// The VIP announcements through BIRD (docs/operations.md, "A fleet").
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bgp {
    /// `off` (no `director.bird_socket`), `announced` (at least one VIP),
    /// `withdrawn` (none), `failing` (BIRD did not take the last change,
    /// or stopped answering: `announced` is what it took before).
    pub state: BgpState,
    /// The prefixes BIRD announces for this director now.
    pub announced: Vec<String>,
    /// The VIPs not announced, and why.
    pub withheld: Vec<Withheld>,
    /// Why BIRD did not take the last change or does not answer
    /// (`failing`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// [`Bgp::state`].
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BgpState {
    /// No BGP configured.
    Off,
    /// At least one VIP announced.
    Announced,
    /// No VIP announced.
    Withdrawn,
    /// BIRD did not take the last change.
    Failing,
}

impl BgpState {
    /// The name in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            BgpState::Off => "off",
            BgpState::Announced => "announced",
            BgpState::Withdrawn => "withdrawn",
            BgpState::Failing => "failing",
        }
    }
}

/// A VIP this director does not announce.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Withheld {
    /// The prefix (`203.0.113.10/32`).
    pub prefix: String,
    /// Why: `drained`, `detached`, `stopping`, `no_backend` (no table of
    /// this address has a backend that takes new flows).
    pub reason: String,
}

/// Request paths, with table names and addresses escaped as path segments.
pub mod path {
    use std::fmt::Write as _;
    use std::net::IpAddr;

    use super::StateAction;

    /// `/healthz`.
    pub const HEALTHZ: &str = "/healthz";
    /// `/v1/openapi.json`.
    pub const OPENAPI: &str = "/v1/openapi.json";
    /// `/metrics`.
    pub const METRICS: &str = "/metrics";
    /// `/v1/stats`.
    pub const STATS: &str = "/v1/stats";
    /// `/v1/tables`.
    pub const TABLES: &str = "/v1/tables";
    /// `/v1/health`: health verdicts in a batch.
    pub const HEALTH: &str = "/v1/health";
    /// `/v1/director`: drained, announcements.
    pub const DIRECTOR: &str = "/v1/director";
    /// `/v1/director/drain`.
    pub const DIRECTOR_DRAIN: &str = "/v1/director/drain";
    /// `/v1/director/undrain`.
    pub const DIRECTOR_UNDRAIN: &str = "/v1/director/undrain";

    /// `s` as one path segment: unreserved characters as they are, every
    /// other byte percent-encoded (RFC 3986).
    pub fn segment(s: &str) -> String {
        let mut out = String::with_capacity(s.len());
        for b in s.bytes() {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                out.push(char::from(b));
            } else {
                let _ = write!(out, "%{b:02X}");
            }
        }
        out
    }

    /// `/v1/tables/{table}`.
    pub fn table(table: &str) -> String {
        format!("/v1/tables/{}", segment(table))
    }

    /// `/v1/tables/{table}/backends`.
    pub fn backends(table: &str) -> String {
        format!("{}/backends", self::table(table))
    }

    /// `/v1/tables/{table}/backends/{ip}`.
    pub fn backend(table: &str, ip: IpAddr) -> String {
        format!("{}/{}", backends(table), segment(&ip.to_string()))
    }

    /// `/v1/tables/{table}/backends/{ip}/{drain|fill|activate|deactivate}`.
    pub fn state(table: &str, ip: IpAddr, action: StateAction) -> String {
        format!("{}/{}", backend(table, ip), action.as_str())
    }

    /// `/v1/tables/{table}/backends/{ip}/health`.
    pub fn health(table: &str, ip: IpAddr) -> String {
        format!("{}/health", backend(table, ip))
    }

    /// `/v1/tables/{table}/preview`.
    pub fn preview(table: &str) -> String {
        format!("{}/preview", self::table(table))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a failure is the test failing

    use super::*;

    #[test]
    fn paths_escape_their_segments() {
        let ip: IpAddr = "2001:db8::7".parse().unwrap();
        assert_eq!(
            path::state("web", ip, StateAction::Drain),
            "/v1/tables/web/backends/2001%3Adb8%3A%3A7/drain"
        );
        assert_eq!(path::preview("a b/c"), "/v1/tables/a%20b%2Fc/preview");
        assert_eq!(
            path::health("web.v2_x", "198.51.100.2".parse().unwrap()),
            "/v1/tables/web.v2_x/backends/198.51.100.2/health"
        );
    }

    #[test]
    fn proposals_read_the_documented_bodies() {
        let p: Proposal =
            serde_json::from_str(r#"{"action":"drain","ip":"198.51.100.3"}"#).unwrap();
        assert_eq!(
            p,
            Proposal::Drain(Target {
                ip: "198.51.100.3".parse().unwrap()
            })
        );
        let p: Proposal = serde_json::from_str(
            r#"{"action":"add","ip":"198.51.100.15","state":"filling","healthchecks":{"http":80}}"#,
        )
        .unwrap();
        let Proposal::Add(add) = p else {
            panic!("{p:?}")
        };
        assert_eq!(add.state, Some(BackendState::Filling));
        assert!(
            serde_json::from_str::<Proposal>(r#"{"action":"drain","ip":"198.51.100.3","x":1}"#)
                .is_err(),
            "unknown fields are refused"
        );
        let h: SetHealth =
            serde_json::from_str(r#"{"healthy":false,"reason":"http 503"}"#).unwrap();
        assert_eq!(
            (h.healthy, h.reachable, h.reason.as_deref()),
            (Some(false), None, Some("http 503"))
        );
    }

    #[test]
    fn error_bodies_carry_field_and_value_only_together() {
        let e = ErrorBody {
            error: "missing bearer token".into(),
            field: None,
            value: None,
        };
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"error":"missing bearer token"}"#
        );
        let e: ErrorBody =
            serde_json::from_str(r#"{"error":"x","field":"ip","value":null}"#).unwrap();
        assert_eq!(e.field.as_deref(), Some("ip"));
    }
}

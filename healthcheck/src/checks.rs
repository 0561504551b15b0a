//! What to probe: each backend's `healthchecks` object read into checks,
//! and the checks of every table de-duplicated, so that a backend listed
//! in several tables is probed once per distinct check and its verdict
//! applied to every table that holds it.
//!
//! GLB's form is read as is: `{"http": 80, "http_uri": "/status", "gue":
//! 19523, "tcp": 22}`. Each check may also be an object with this
//! project's options (`{"http": {"port": 80, "path": "/status",
//! "statuses": [200], "proxy_protocol": "v2", "interval_ms": 500}}`).

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;

use proto::config::Config;
use serde::Deserialize;
use serde_json::Value;

use crate::settings::{Settings, SettingsError, Timing, TimingFields};

/// The kind of a check, and which flag it decides.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// GET over HTTP: decides `healthy`.
    Http,
    /// GET over HTTPS: decides `healthy`.
    Https,
    /// A TCP connect: decides `healthy`.
    Tcp,
    /// An ICMP echo to the VIP inside GUE, through the redirect module:
    /// decides `reachable`.
    Gue,
}

impl Kind {
    /// The name used in configs and output.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Http => "http",
            Kind::Https => "https",
            Kind::Tcp => "tcp",
            Kind::Gue => "gue",
        }
    }

    /// Whether it decides `reachable` (else `healthy`).
    pub fn decides_reachable(self) -> bool {
        self == Kind::Gue
    }
}

/// A PROXY protocol version, sent first on a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProxyVersion {
    /// The text header.
    V1,
    /// The binary header.
    V2,
}

/// One check, complete: everything that makes two checks the same.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CheckSpec {
    /// Its kind.
    pub kind: Kind,
    /// The backend's address.
    pub addr: IpAddr,
    /// The port probed (the GUE port for `gue`).
    pub port: u16,
    /// HTTP(S): the path of the GET.
    pub path: String,
    /// HTTP(S): the `Host` header, and for HTTPS the name sent in SNI and
    /// verified in the certificate.
    pub host: Option<String>,
    /// HTTP(S): statuses that pass, as inclusive ranges.
    pub statuses: Vec<(u16, u16)>,
    /// HTTPS: accept any certificate.
    pub insecure: bool,
    /// HTTPS: PEM file of the authorities to trust instead of the
    /// built-in ones.
    pub ca_file: Option<PathBuf>,
    /// HTTP(S), TCP: a PROXY protocol header first.
    pub proxy_protocol: Option<ProxyVersion>,
    /// GUE: the inner echo request's destination (the table's VIP).
    pub vip: Option<IpAddr>,
    /// GUE: hops in the private data (the table's `hops`).
    pub hops: u8,
    /// When and how patiently.
    pub timing: Timing,
}

impl fmt::Display for CheckSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = std::net::SocketAddr::new(self.addr, self.port);
        match self.kind {
            Kind::Http | Kind::Https => write!(f, "{} {at}{}", self.kind.as_str(), self.path),
            Kind::Tcp => write!(f, "tcp {at}"),
            Kind::Gue => match self.vip {
                Some(v) => write!(f, "gue {at} to {v}"),
                None => write!(f, "gue {at}"),
            },
        }
    }
}

/// A backend of a table and the checks that decide its flags.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holder {
    /// The table's name.
    pub table: String,
    /// The backend's address.
    pub ip: IpAddr,
    /// Indexes into [`Plan::checks`].
    pub checks: Vec<usize>,
}

/// Every check to run and every backend they decide.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// Distinct checks, each probed once.
    pub checks: Vec<CheckSpec>,
    /// Backends with at least one check, in config order.
    pub holders: Vec<Holder>,
    /// Fields ignored, one line each, for the operator.
    pub warnings: Vec<String>,
}

/// The default statuses that pass: 2xx.
pub const DEFAULT_STATUSES: (u16, u16) = (200, 299);

/// One check's object form.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Options {
    port: Option<u16>,
    path: Option<String>,
    host: Option<String>,
    statuses: Option<Vec<Value>>,
    #[serde(default)]
    insecure: bool,
    ca_file: Option<PathBuf>,
    proxy_protocol: Option<ProxyVersion>,
    vip: Option<IpAddr>,
    interval_ms: Option<u64>,
    fast_interval_ms: Option<u64>,
    timeout_ms: Option<u64>,
    trigger: Option<u32>,
    rise: Option<u32>,
    fall: Option<u32>,
    jitter: Option<f64>,
}

impl Plan {
    /// Reads every backend's `healthchecks` of `config`, with timing from
    /// `settings`.
    pub fn from_config(config: &Config, settings: &Settings) -> Result<Plan, SettingsError> {
        let mut plan = Plan::default();
        let mut index: BTreeMap<CheckSpec, usize> = BTreeMap::new();
        for table in &config.tables {
            let timing = settings.table_timing(&table.name);
            for (bi, b) in table.backends.iter().enumerate() {
                let Some(hc) = &b.healthchecks else { continue };
                let ip = b.backend.addr;
                let at = format!(
                    "table \"{}\".backends[{bi}] ({ip}).healthchecks",
                    table.name
                );
                let specs = parse_backend(hc, ip, table, timing, &at, &mut plan.warnings)?;
                if specs.is_empty() {
                    continue;
                }
                let mut checks = Vec::new();
                for s in specs {
                    let next = plan.checks.len();
                    let i = *index.entry(s.clone()).or_insert(next);
                    if i == next {
                        plan.checks.push(s);
                    }
                    if !checks.contains(&i) {
                        checks.push(i);
                    }
                }
                plan.holders.push(Holder {
                    table: table.name.clone(),
                    ip,
                    checks,
                });
            }
        }
        Ok(plan)
    }
}

/// The VIP a `gue` probe of `table` is sent to: its first bind of a single
/// address in the backend's family, else of the other family, else the
/// backend's own address (GLB's choice, which proves the tunnel but not
/// that the VIP is held).
fn table_vip(table: &proto::config::Table, backend: IpAddr) -> IpAddr {
    let single =
        |b: &&proto::config::Bind| b.prefix.len == if b.prefix.addr.is_ipv4() { 32 } else { 128 };
    let binds: Vec<&proto::config::Bind> = table.binds.iter().filter(single).collect();
    binds
        .iter()
        .find(|b| b.prefix.addr.is_ipv4() == backend.is_ipv4())
        .or(binds.first())
        .map_or(backend, |b| b.prefix.addr)
}

fn parse_backend(
    hc: &Value,
    ip: IpAddr,
    table: &proto::config::Table,
    timing: Timing,
    at: &str,
    warnings: &mut Vec<String>,
) -> Result<Vec<CheckSpec>, SettingsError> {
    let err = |field: String, message: String| SettingsError { field, message };
    let obj = hc
        .as_object()
        .ok_or_else(|| err(at.to_string(), format!("expected an object, found {hc}")))?;
    let http_uri = match obj.get("http_uri") {
        None => None,
        Some(Value::String(s)) if s.starts_with('/') => Some(s.clone()),
        Some(v) => {
            return Err(err(
                format!("{at}.http_uri"),
                format!("{v} is not a path starting with /"),
            ));
        }
    };
    let mut out = Vec::new();
    for (key, v) in obj {
        let kind = match key.as_str() {
            "http" => Kind::Http,
            "https" => Kind::Https,
            "tcp" => Kind::Tcp,
            "gue" => Kind::Gue,
            "http_uri" => continue,
            "fou" => {
                warnings.push(format!(
                    "{at}: \"fou\" (GLB's legacy GRE-in-UDP) is not supported by the redirect module; ignored"
                ));
                continue;
            }
            other => {
                warnings.push(format!("{at}: unknown check \"{other}\" ignored"));
                continue;
            }
        };
        let field = format!("{at}.{key}");
        if kind == Kind::Gue && table.encap == proto::Encap::Ipip {
            // Not refused: a backend of an `ipip` table may run the agent,
            // which answers it. One that does not would be marked
            // unreachable for good, and leave every row.
            warnings.push(format!(
                "{field}: table \"{}\" sends IP-in-IP; a gue check passes only if the backend runs the redirect agent (redirect-xdp), so a backend without it would be marked unreachable: check it with http or tcp",
                table.name
            ));
        }
        let o: Options = match v {
            Value::Number(_) => Options {
                port: Some(
                    v.as_u64()
                        .and_then(|n| u16::try_from(n).ok())
                        .filter(|p| *p > 0)
                        .ok_or_else(|| {
                            err(field.clone(), format!("{v} is not a port (1-65535)"))
                        })?,
                ),
                ..Options::default()
            },
            Value::Object(_) => {
                serde_json::from_value(v.clone()).map_err(|e| err(field.clone(), e.to_string()))?
            }
            _ => {
                return Err(err(
                    field,
                    format!("{v} is neither a port nor an object of options"),
                ));
            }
        };
        let port = match (o.port, kind) {
            (Some(0), _) => {
                return Err(err(
                    format!("{field}.port"),
                    "0 is not a port (1-65535)".into(),
                ));
            }
            (Some(p), _) => p,
            (None, Kind::Gue) => proto::GUE_PORT,
            (None, Kind::Http) => 80,
            (None, Kind::Https) => 443,
            (None, Kind::Tcp) => {
                return Err(err(field, "a tcp check needs a \"port\"".into()));
            }
        };
        let is_http = matches!(kind, Kind::Http | Kind::Https);
        let only = |present: bool, name: &str, kinds: &str| -> Result<(), SettingsError> {
            if present {
                return Err(err(
                    format!("{field}.{name}"),
                    format!("applies to {kinds} checks only"),
                ));
            }
            Ok(())
        };
        only(!is_http && o.path.is_some(), "path", "http and https")?;
        only(!is_http && o.host.is_some(), "host", "http and https")?;
        only(
            !is_http && o.statuses.is_some(),
            "statuses",
            "http and https",
        )?;
        only(kind != Kind::Https && o.insecure, "insecure", "https")?;
        only(
            kind != Kind::Https && o.ca_file.is_some(),
            "ca_file",
            "https",
        )?;
        only(
            kind == Kind::Gue && o.proxy_protocol.is_some(),
            "proxy_protocol",
            "http, https and tcp",
        )?;
        only(kind != Kind::Gue && o.vip.is_some(), "vip", "gue")?;
        let path = match (&o.path, kind) {
            (Some(p), _) if p.starts_with('/') && !p.chars().any(char::is_whitespace) => p.clone(),
            (Some(p), _) => {
                return Err(err(
                    format!("{field}.path"),
                    format!("\"{p}\" is not a path starting with / without spaces"),
                ));
            }
            (None, Kind::Http) => http_uri.clone().unwrap_or_else(|| "/".into()),
            (None, Kind::Https) => "/".into(),
            (None, _) => String::new(),
        };
        let statuses = match &o.statuses {
            None if is_http => vec![DEFAULT_STATUSES],
            None => Vec::new(),
            Some(list) => parse_statuses(list).map_err(|m| err(format!("{field}.statuses"), m))?,
        };
        if let Some(h) = &o.host
            && (h.is_empty() || h.chars().any(|c| c.is_whitespace() || c == '/'))
        {
            return Err(err(
                format!("{field}.host"),
                format!("\"{h}\" is not a host name"),
            ));
        }
        let fields = TimingFields {
            interval_ms: o.interval_ms,
            fast_interval_ms: o.fast_interval_ms,
            timeout_ms: o.timeout_ms,
            trigger: o.trigger,
            rise: o.rise,
            fall: o.fall,
            jitter: o.jitter,
        };
        let timing = fields.apply(timing, &field)?;
        out.push(CheckSpec {
            kind,
            addr: ip,
            port,
            path,
            host: o.host,
            statuses,
            insecure: o.insecure,
            ca_file: o.ca_file,
            proxy_protocol: o.proxy_protocol,
            vip: (kind == Kind::Gue).then(|| o.vip.unwrap_or_else(|| table_vip(table, ip))),
            hops: if kind == Kind::Gue { table.hops } else { 0 },
            timing,
        });
    }
    Ok(out)
}

/// `[200, 204, "300-399"]` into inclusive ranges.
fn parse_statuses(list: &[Value]) -> Result<Vec<(u16, u16)>, String> {
    if list.is_empty() {
        return Err("needs at least one status".into());
    }
    let status = |s: &str| -> Option<u16> { s.parse().ok().filter(|n| (100..=599).contains(n)) };
    let mut out = Vec::new();
    for v in list {
        let range = match v {
            Value::Number(n) => n
                .as_u64()
                .and_then(|n| status(&n.to_string()))
                .map(|n| (n, n)),
            Value::String(s) => match s.split_once('-') {
                Some((a, b)) => status(a).zip(status(b)).filter(|(a, b)| a <= b),
                None => status(s).map(|n| (n, n)),
            },
            _ => None,
        }
        .ok_or_else(|| format!("{v} is not a status (100-599) or a range like \"200-299\""))?;
        out.push(range);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a failure is the test failing

    use super::*;

    fn config(tables: &str) -> Config {
        Config::from_json(&format!(r#"{{"tables": [{tables}]}}"#)).unwrap()
    }

    const KEYS: &str = r#""hash_key":"00000000000000000000000000000001","seed":"00000000000000000000000000000002""#;

    #[test]
    fn glb_form_is_read_as_is() {
        let c = config(&format!(
            r#"{{"name":"web",{KEYS},"binds":[{{"ip":"203.0.113.10","proto":"tcp","port":80}}],
               "backends":[{{"ip":"198.51.100.11","healthchecks":{{"http":80,"http_uri":"/ok","gue":19523,"tcp":22}}}}]}}"#
        ));
        let s = Settings::from_values(None, None).unwrap();
        let p = Plan::from_config(&c, &s).unwrap();
        let names: Vec<String> = p.checks.iter().map(ToString::to_string).collect();
        assert_eq!(
            names,
            [
                "gue 198.51.100.11:19523 to 203.0.113.10",
                "http 198.51.100.11:80/ok",
                "tcp 198.51.100.11:22"
            ]
        );
        assert_eq!(p.checks[1].statuses, vec![DEFAULT_STATUSES]);
        assert_eq!(p.checks[0].hops, 2);
        assert_eq!(p.holders.len(), 1);
        assert_eq!(p.holders[0].checks, vec![0, 1, 2]);
    }

    #[test]
    fn the_same_check_in_two_tables_is_probed_once_for_both() {
        let c = config(&format!(
            r#"{{"name":"a",{KEYS},"backends":[{{"ip":"198.51.100.11","healthchecks":{{"http":80}}}},
                                               {{"ip":"198.51.100.12","healthchecks":{{"http":80}}}}]}},
               {{"name":"b",{KEYS},"backends":[{{"ip":"198.51.100.11","healthchecks":{{"http":{{"port":80,"path":"/"}}}}}},
                                               {{"ip":"198.51.100.12","healthchecks":{{"http":81}}}}]}}"#
        ));
        let p = Plan::from_config(&c, &Settings::from_values(None, None).unwrap()).unwrap();
        assert_eq!(p.checks.len(), 3, "{:?}", p.checks);
        assert_eq!(p.holders[0].checks, p.holders[2].checks);
        assert_ne!(p.holders[1].checks, p.holders[3].checks);
    }

    #[test]
    fn options_and_errors_name_the_backend_and_field() {
        let c = config(&format!(
            r#"{{"name":"web",{KEYS},"backends":[{{"ip":"198.51.100.11","healthchecks":{{
                "https":{{"port":8443,"host":"www.example.com","insecure":true,"statuses":[200,"300-399"],"proxy_protocol":"v2","rise":1}},
                "fou":19523,"smtp":25}}}}]}}"#
        ));
        let p = Plan::from_config(&c, &Settings::from_values(None, None).unwrap()).unwrap();
        let h = &p.checks[0];
        assert_eq!((h.kind, h.port, h.insecure), (Kind::Https, 8443, true));
        assert_eq!(h.statuses, vec![(200, 200), (300, 399)]);
        assert_eq!(h.proxy_protocol, Some(ProxyVersion::V2));
        assert_eq!((h.timing.rise, h.timing.fall), (1, 3));
        assert_eq!(p.warnings.len(), 2, "{:?}", p.warnings);

        let bad = config(&format!(
            r#"{{"name":"web",{KEYS},"backends":[{{"ip":"198.51.100.11","healthchecks":{{"tcp":{{"port":22,"path":"/"}}}}}}]}}"#
        ));
        let e = Plan::from_config(&bad, &Settings::from_values(None, None).unwrap()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "table \"web\".backends[0] (198.51.100.11).healthchecks.tcp.path: applies to http and https checks only"
        );
        let bad = config(&format!(
            r#"{{"name":"web",{KEYS},"backends":[{{"ip":"198.51.100.11","healthchecks":{{"http":70000}}}}]}}"#
        ));
        let e = Plan::from_config(&bad, &Settings::from_values(None, None).unwrap()).unwrap_err();
        assert!(
            e.to_string()
                .ends_with("healthchecks.http: 70000 is not a port (1-65535)"),
            "{e}"
        );
    }

    #[test]
    fn a_gue_check_in_an_ipip_table_is_probed_and_warned_about() {
        let c = config(&format!(
            r#"{{"name":"web",{KEYS},"encap":"ipip","backends":[{{"ip":"198.51.100.11","healthchecks":{{"gue":19523,"http":80}}}}]}}"#
        ));
        let p = Plan::from_config(&c, &Settings::from_values(None, None).unwrap()).unwrap();
        assert_eq!(p.checks.len(), 2, "{:?}", p.checks);
        assert_eq!(
            p.warnings,
            [
                "table \"web\".backends[0] (198.51.100.11).healthchecks.gue: table \"web\" sends IP-in-IP; \
              a gue check passes only if the backend runs the redirect agent (redirect-xdp), so a \
              backend without it would be marked unreachable: check it with http or tcp"
            ]
        );

        let gue = config(&format!(
            r#"{{"name":"web",{KEYS},"backends":[{{"ip":"198.51.100.11","healthchecks":{{"gue":19523}}}}]}}"#
        ));
        let p = Plan::from_config(&gue, &Settings::from_values(None, None).unwrap()).unwrap();
        assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    }

    #[test]
    fn gue_goes_to_a_vip_of_the_backends_family_else_any_else_the_backend() {
        let c = config(&format!(
            r#"{{"name":"a",{KEYS},"hops":1,"binds":[{{"ip":"2001:db8:10::10","proto":"tcp","port":80}},{{"ip":"203.0.113.128/25","proto":"tcp","port":80}},{{"ip":"203.0.113.10","proto":"tcp","port":443}}],
                 "backends":[{{"ip":"198.51.100.11","healthchecks":{{"gue":19523}}}}]}},
               {{"name":"b",{KEYS},"binds":[{{"ip":"2001:db8:10::11","proto":"tcp","port":80}}],
                 "backends":[{{"ip":"198.51.100.11","healthchecks":{{"gue":19523}}}}]}},
               {{"name":"c",{KEYS},"backends":[{{"ip":"198.51.100.11","healthchecks":{{"gue":{{"vip":"203.0.113.99"}}}}}}]}}"#
        ));
        let p = Plan::from_config(&c, &Settings::from_values(None, None).unwrap()).unwrap();
        let vips: Vec<String> = p
            .checks
            .iter()
            .map(|c| c.vip.unwrap().to_string())
            .collect();
        assert_eq!(vips, ["203.0.113.10", "2001:db8:10::11", "203.0.113.99"]);
        assert_eq!(p.checks[0].hops, 1);
    }
}

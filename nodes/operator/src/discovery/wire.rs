//! The JSON shapes on discovery's wire, and the parsing of their fields: strings,
//! converted and checked by hand so a bad field gives a clear line and not serde's idea of
//! an enum.

use super::registry::{Member, Registration};
use ballot_core::{Ballot, NodeId, Role};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::time::Duration;

/// `"3.1"`: round 3 of proposer 1, as [`Ballot`] prints it.
pub fn parse_ballot(s: &str) -> Result<Ballot, String> {
    let bad = || format!("'{}' is not a ballot: use round.proposer, e.g. 3.1", one_line(s, 40));
    let (round, proposer) = s.split_once('.').ok_or_else(bad)?;
    let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    if !digits(round) || !digits(proposer) {
        return Err(bad());
    }
    Ok(Ballot::new(round.parse().map_err(|_| bad())?, proposer.parse().map_err(|_| bad())?))
}

pub(super) fn parse_role(s: &str) -> Result<Role, String> {
    match s {
        "proposer" => Ok(Role::Proposer),
        "acceptor" => Ok(Role::Acceptor),
        "learner" => Ok(Role::Learner),
        "client" => Ok(Role::Client),
        _ => Err(format!("'{}' is not a role: use proposer, acceptor, learner or client", one_line(s, 40))),
    }
}

pub(super) fn parse_node(s: &str) -> Result<NodeId, String> {
    s.parse::<NodeId>()
        .map_err(|_| format!("'{}' is not a node name: use role-index, e.g. proposer-1", one_line(s, 40)))
}

pub(super) fn parse_addr(field: &str, s: &str) -> Result<SocketAddr, String> {
    s.parse::<SocketAddr>()
        .map_err(|_| format!("{field} '{}' is not an address: use ip:port, e.g. 127.0.0.1:7001", one_line(s, 60)))
}

/// At most `max` characters of `s`, control characters escaped, so it fits on one line.
pub(super) fn one_line(s: &str, max: usize) -> String {
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i == max {
            out.push_str("...");
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

// JSON shapes on the wire: strings, converted and checked by hand so a bad field gives a
// clear line and not serde's idea of an enum.

#[derive(Serialize, Deserialize)]
pub(super) struct WireRegistration {
    pub(super) node: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) role: Option<String>,
    pub(super) addr: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) http: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) ballot: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) leader: Option<bool>,
}

impl WireRegistration {
    pub(super) fn from_registration(r: &Registration) -> Self {
        WireRegistration {
            node: r.node.to_string(),
            role: Some(r.node.role.to_string()),
            addr: r.addr.to_string(),
            http: r.http.map(|a| a.to_string()),
            ballot: r.ballot.map(|b| b.to_string()),
            leader: Some(r.leader),
        }
    }

    pub(super) fn check(self) -> Result<Registration, String> {
        let node = parse_node(&self.node)?;
        if let Some(role) = &self.role {
            let role = parse_role(role)?;
            if role != node.role {
                return Err(format!("role {role} does not match node {node}"));
            }
        }
        let addr = parse_addr("addr", &self.addr)?;
        let http = self.http.as_deref().map(|h| parse_addr("http", h)).transpose()?;
        let ballot = self.ballot.as_deref().map(parse_ballot).transpose()?;
        let leader = self.leader.unwrap_or(false);
        if leader && node.role != Role::Proposer {
            return Err(format!("{node} claims leadership: only a proposer can lead"));
        }
        Ok(Registration { node, addr, http, ballot, leader })
    }
}

#[derive(Serialize, Deserialize)]
pub(super) struct WireDeregister {
    pub(super) node: String,
}

#[derive(Serialize, Deserialize)]
pub(super) struct WireMember {
    pub(super) node: String,
    pub(super) role: String,
    pub(super) addr: String,
    #[serde(default)]
    pub(super) http: Option<String>,
    #[serde(default)]
    pub(super) ballot: Option<String>,
    #[serde(default)]
    pub(super) leader: bool,
    pub(super) last_seen_ms_ago: u64,
}

impl WireMember {
    pub(super) fn from_member(m: &Member) -> Self {
        WireMember {
            node: m.node.to_string(),
            role: m.node.role.to_string(),
            addr: m.addr.to_string(),
            http: m.http.map(|a| a.to_string()),
            ballot: m.ballot.map(|b| b.to_string()),
            leader: m.leader,
            last_seen_ms_ago: m.last_seen_ms_ago,
        }
    }

    pub(super) fn check(self) -> Result<Member, String> {
        let reg = WireRegistration {
            node: self.node,
            role: Some(self.role),
            addr: self.addr,
            http: self.http,
            ballot: self.ballot,
            leader: Some(self.leader),
        }
        .check()?;
        Ok(Member {
            node: reg.node,
            addr: reg.addr,
            http: reg.http,
            ballot: reg.ballot,
            leader: reg.leader,
            last_seen_ms_ago: self.last_seen_ms_ago,
        })
    }
}

#[derive(Serialize, Deserialize)]
pub(super) struct WireMembers {
    pub(super) ttl_ms: u64,
    pub(super) members: Vec<WireMember>,
}

/// The answer to a register or heartbeat.
#[derive(Serialize, Deserialize)]
pub(super) struct Registered {
    pub(super) ok: bool,
    pub(super) ttl_ms: u64,
}

/// The answer to a deregister.
#[derive(Serialize, Deserialize)]
pub(super) struct Deregistered {
    pub(super) ok: bool,
    pub(super) removed: bool,
}

/// Every error answer: one line.
#[derive(Serialize, Deserialize)]
pub(super) struct ErrorBody {
    pub(super) error: String,
}

pub(super) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

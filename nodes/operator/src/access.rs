//! Who may use an operator-plane server, and what is refused: [`Access`] (open, or tokens
//! checked with the cluster secret) and [`Refusals`] (every refusal counted by server and
//! reason, and logged as one line, at most once a second per server and reason).
//!
//! The operator plane (the control channel, discovery's writes) proves callers with the
//! tokens of [`ballot_transports::auth`]: `HMAC-SHA256(cluster secret, identity)`. A
//! server that holds the secret recomputes the token of the identity a caller claims and
//! compares in constant time ([`Credentials::check_token`]); it never stores or compares
//! tokens itself.

use ballot_transports::auth::{Credentials, Identity};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Who may use a server.
#[derive(Clone, Default)]
pub enum Access {
    /// Anyone: no credentials were given (tests, an insecure cluster). Every server that
    /// runs open says so once in its log at start.
    #[default]
    Open,
    /// Callers that prove an identity with its token, checked with the cluster secret of
    /// these credentials.
    Tokens(Arc<Credentials>),
}

impl fmt::Debug for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Access::Open => f.write_str("Access::Open"),
            Access::Tokens(c) => write!(f, "Access::Tokens({c:?})"),
        }
    }
}

/// Why a caller was refused. Each is a label of `ballot_operator_refused_total` ([`Self::reason`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Refusal {
    /// No credential where one is required.
    NoCredential,
    /// A credential for an identity that may not do this (a node on the control channel,
    /// a name that is not an identity).
    WrongIdentity,
    /// A token that is not the claimed identity's.
    BadToken,
    /// A leadership claim with a ballot the proposer does not own, or with none.
    ForeignBallot,
    /// A frame or body over its limit.
    Oversized,
    /// Bytes that do not decode.
    Garbage,
    /// A frame or request begun and not finished within its deadline, or no first frame
    /// within the deadline after connecting.
    Timeout,
    /// The server already has as many connections as it allows.
    TooManyConnections,
    /// The registry is full.
    Full,
}

impl Refusal {
    /// The metric label.
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::NoCredential => "no_credential",
            Refusal::WrongIdentity => "wrong_identity",
            Refusal::BadToken => "bad_token",
            Refusal::ForeignBallot => "foreign_ballot",
            Refusal::Oversized => "oversized",
            Refusal::Garbage => "garbage",
            Refusal::Timeout => "timeout",
            Refusal::TooManyConnections => "too_many_connections",
            Refusal::Full => "full",
        }
    }
}

impl Access {
    /// `Open` without credentials; with them, `Tokens`, which needs the cluster secret
    /// (`token.secret` in the folder): a server that cannot check tokens must not start.
    pub fn from_credentials(creds: Option<Arc<Credentials>>) -> Result<Access, String> {
        match creds {
            None => Ok(Access::Open),
            Some(c) if c.token_secret.is_none() => Err(format!(
                "{} has no token.secret: the operator plane cannot check tokens without the cluster secret",
                c.dir.display()
            )),
            Some(c) => Ok(Access::Tokens(c)),
        }
    }

    /// Whether anyone may call.
    pub fn is_open(&self) -> bool {
        matches!(self, Access::Open)
    }

    /// Checks that `token` proves `who`, in constant time in the token. Always `Ok` when
    /// open; `NoCredential` when a token is required and none came.
    pub fn check(&self, who: Identity, token: Option<&str>) -> Result<(), Refusal> {
        let Access::Tokens(creds) = self else { return Ok(()) };
        let token = token.ok_or(Refusal::NoCredential)?;
        if creds.check_token(who, token) {
            Ok(())
        } else {
            Err(Refusal::BadToken)
        }
    }
}

/// At most one log line per server and reason in this period; the next says how many
/// were not logged.
pub const REFUSAL_LOG_PERIOD: Duration = Duration::from_secs(1);

#[derive(Default)]
struct Counts {
    total: BTreeMap<(&'static str, Refusal), u64>,
    /// Per server and reason: when a line was last logged, and refusals since then.
    logged: BTreeMap<(&'static str, Refusal), (Option<Instant>, u64)>,
}

/// Refusals of a process's operator-plane servers, by server (`control`, `discovery`)
/// and reason. Cheap to share; the `/metrics` page reads it.
#[derive(Clone, Default)]
pub struct Refusals(Arc<Mutex<Counts>>);

impl fmt::Debug for Refusals {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.snapshot().into_iter().map(|(s, r, n)| (format!("{s}/{}", r.reason()), n))).finish()
    }
}

impl Refusals {
    /// Counts one refusal by `server` for `why`, and logs `line` (one line: it names the
    /// caller and what was refused) unless a line for the same server and reason was
    /// logged within [`REFUSAL_LOG_PERIOD`]; the next line logged says how many were not.
    pub fn refuse(&self, server: &'static str, why: Refusal, line: impl fmt::Display) {
        let mut c = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *c.total.entry((server, why)).or_default() += 1;
        let now = Instant::now();
        // Never logged is `None`, not an instant in the past: `Instant - Duration` panics
        // when the clock started less than that long ago.
        let entry = c.logged.entry((server, why)).or_insert((None, 0));
        if entry.0.is_some_and(|t| now.duration_since(t) < REFUSAL_LOG_PERIOD) {
            entry.1 += 1;
            return;
        }
        let unlogged = std::mem::take(&mut entry.1);
        entry.0 = Some(now);
        drop(c);
        let more = if unlogged > 0 { format!(" ({unlogged} more not logged)") } else { String::new() };
        tracing::warn!("{server}: refused ({}): {line}{more}", why.reason());
    }

    /// How many refusals of `server` for `why` so far.
    pub fn count(&self, server: &str, why: Refusal) -> u64 {
        let c = self.0.lock().unwrap_or_else(|e| e.into_inner());
        c.total.iter().filter(|((s, r), _)| *s == server && *r == why).map(|(_, n)| n).sum()
    }

    /// The `ballot_operator_refused_total` family in Prometheus text (format 0.0.4), one sample
    /// per server and reason seen so far.
    pub fn render_prometheus(&self, out: &mut String) {
        use std::fmt::Write as _;
        out.push_str(
            "# HELP ballot_operator_refused_total Callers refused by the operator-plane servers, by server and reason.\n",
        );
        out.push_str("# TYPE ballot_operator_refused_total counter\n");
        for (server, why, n) in self.snapshot() {
            let _ =
                writeln!(out, "ballot_operator_refused_total{{server=\"{server}\",reason=\"{}\"}} {n}", why.reason());
        }
    }

    /// Every count so far: server, reason, count.
    pub fn snapshot(&self) -> Vec<(&'static str, Refusal, u64)> {
        let c = self.0.lock().unwrap_or_else(|e| e.into_inner());
        c.total.iter().map(|(&(s, r), &n)| (s, r, n)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ballot_core::NodeId;

    #[test]
    fn open_access_takes_anyone_and_tokens_only_their_identity() {
        assert_eq!(Access::Open.check(Identity::Operator, None), Ok(()));
        let dir = std::env::temp_dir().join(format!("ballot-access-{}", std::process::id()));
        ballot_transports::auth::generate(&dir, &[NodeId::proposer(1)]).unwrap();
        let op = Arc::new(Credentials::load(&dir, Identity::Operator).unwrap());
        let access = Access::from_credentials(Some(op.clone())).unwrap();
        assert_eq!(access.check(Identity::Operator, Some(&op.token)), Ok(()));
        assert_eq!(access.check(Identity::Operator, None), Err(Refusal::NoCredential));
        let p1 = Identity::Node(NodeId::proposer(1));
        assert_eq!(access.check(p1, Some(&op.token)), Err(Refusal::BadToken));
        let mut no_secret = (*op).clone();
        no_secret.token_secret = None;
        let e = Access::from_credentials(Some(Arc::new(no_secret))).unwrap_err();
        assert!(e.contains("token.secret") && !e.contains('\n'), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn refusals_count_every_one_by_server_and_reason() {
        let r = Refusals::default();
        for _ in 0..1000 {
            r.refuse("control", Refusal::BadToken, "from 127.0.0.1:1");
        }
        r.refuse("discovery", Refusal::NoCredential, "POST /register from 127.0.0.1:2");
        assert_eq!(r.count("control", Refusal::BadToken), 1000);
        assert_eq!(r.count("discovery", Refusal::NoCredential), 1);
        assert_eq!(r.count("control", Refusal::NoCredential), 0);
    }
}

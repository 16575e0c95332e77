//! Who a peer is, and the credentials that prove it.
//!
//! A cluster's processes prove who they are: over zmq with a CURVE key pair on the
//! cluster's allow-list, on the operator plane (control channel, discovery registration)
//! with a token derived from the cluster's secret, and over tcp with a certificate signed
//! by the cluster's CA (mutual TLS, [`crate::tls`]). The in-memory network needs none of
//! this.
//!
//! One folder holds a cluster's credentials, as [`generate`]
//! writes it; [`Credentials::load`] reads one identity's share of it:
//!
//! | file | what it is |
//! |---|---|
//! | `ca.pem` | the cluster's CA certificate: the only TLS trust root |
//! | `ca.key` | the CA's key (only `ballot certs` needs it; keep it off the nodes if you like) |
//! | `<id>.pem`, `<id>.key` | the TLS certificate and key of `<id>`; the certificate names `<id>` as its one DNS name |
//! | `<id>.curve` | the CURVE key pair of `<id>`: `public = Z85` and `secret = Z85` lines |
//! | `curve.allow` | the allow-list: `<id> <Z85 public key>` per line, every identity of the cluster |
//! | `token.secret` | the cluster secret (hex) that control channels and discovery check tokens with |
//! | `<id>.token` | `<id>`'s token: HMAC-SHA256(secret, `<id>`), hex |
//!
//! `<id>` is an [`Identity`]: a node name (`acceptor-1`), `client` (every voter's client:
//! one credential for all `client-N` names) or `operator` (the chaos runner and tools).

mod generate;
mod token;
pub mod z85;

pub use generate::{generate, issue, GenerateError};
pub use token::{token_for, verify_token, TOKEN_SECRET_BYTES};

use ballot_core::{NodeId, Role};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// Who a peer proved to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Identity {
    /// One cluster node: it may send only as itself.
    Node(NodeId),
    /// A voter's client: it may send as any `client-N` (clients pick their own number).
    Client,
    /// An operator (the chaos runner, tools): the control channel; never a protocol
    /// sender.
    Operator,
}

impl Identity {
    /// The identity a node must prove to be `id`: its own name, or [`Identity::Client`]
    /// for a `client-N`.
    pub fn of(id: NodeId) -> Identity {
        match id.role {
            Role::Client => Identity::Client,
            _ => Identity::Node(id),
        }
    }

    /// Whether a peer with this identity may send an envelope whose `from` is `from`.
    pub fn permits(self, from: NodeId) -> bool {
        Identity::of(from) == self
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Identity::Node(id) => write!(f, "{id}"),
            Identity::Client => f.write_str("client"),
            Identity::Operator => f.write_str("operator"),
        }
    }
}

/// The text was not an identity.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not an identity: use a node name (acceptor-1), client or operator")]
pub struct BadIdentity(pub String);

impl FromStr for Identity {
    type Err = BadIdentity;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "client" => Ok(Identity::Client),
            "operator" => Ok(Identity::Operator),
            _ => match s.parse::<NodeId>() {
                Ok(id) if id.role != Role::Client => Ok(Identity::Node(id)),
                _ => Err(BadIdentity(s.into())),
            },
        }
    }
}

/// A CURVE key pair (X25519), as ZeroMQ's CURVE mechanism uses it.
#[derive(Clone, PartialEq, Eq)]
pub struct CurveKeyPair {
    /// The public key.
    pub public: [u8; 32],
    /// The secret key.
    pub secret: [u8; 32],
}

impl fmt::Debug for CurveKeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CurveKeyPair {{ public: {}, secret: <hidden> }}", z85::encode(&self.public))
    }
}

/// One identity's share of a credentials folder, read by [`Credentials::load`]. Its
/// `Debug` form names the identity and the folder, never a key.
#[derive(Clone)]
pub struct Credentials {
    /// Who these credentials prove.
    pub identity: Identity,
    /// The folder they were read from.
    pub dir: PathBuf,
    /// The CA certificate, PEM.
    pub ca_pem: String,
    /// This identity's certificate, PEM.
    pub cert_pem: String,
    /// This identity's private key, PEM (PKCS#8).
    pub key_pem: String,
    /// This identity's CURVE key pair.
    pub curve: CurveKeyPair,
    /// Every allowed CURVE public key and whose it is.
    pub curve_allow: BTreeMap<[u8; 32], Identity>,
    /// This identity's token for the operator plane (hex).
    pub token: String,
    /// The cluster secret, when the folder holds it (needed to check others' tokens).
    pub token_secret: Option<Vec<u8>>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Credentials {{ identity: {}, dir: {} }}", self.identity, self.dir.display())
    }
}

/// A credentials folder could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CredError {
    /// A file is missing or unreadable.
    #[error("cannot read {path}: {source}; make credentials with `ballot certs --dir DIR --peers LIST`")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file is there but garbled.
    #[error("{path} is not valid: {why}; make credentials again with `ballot certs`")]
    Garbled {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
}

fn read(path: PathBuf) -> Result<String, CredError> {
    std::fs::read_to_string(&path).map_err(|source| CredError::Read { path, source })
}

fn garbled(path: &Path, why: impl Into<String>) -> CredError {
    CredError::Garbled { path: path.to_path_buf(), why: why.into() }
}

impl Credentials {
    /// Reads `identity`'s certificate, key, CURVE pair and token from `dir`, with the CA,
    /// the CURVE allow-list and (if present) the cluster secret.
    pub fn load(dir: &Path, identity: Identity) -> Result<Credentials, CredError> {
        let file = |suffix: &str| dir.join(format!("{identity}{suffix}"));
        let curve_path = file(".curve");
        let curve = parse_curve_pair(&read(curve_path.clone())?).map_err(|why| garbled(&curve_path, why))?;
        let allow_path = dir.join("curve.allow");
        let curve_allow = parse_allow_list(&read(allow_path.clone())?).map_err(|why| garbled(&allow_path, why))?;
        let secret_path = dir.join("token.secret");
        let token_secret = match std::fs::read_to_string(&secret_path) {
            Ok(s) => Some(hex_decode(s.trim()).ok_or_else(|| garbled(&secret_path, "not hex"))?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(source) => return Err(CredError::Read { path: secret_path, source }),
        };
        Ok(Credentials {
            identity,
            dir: dir.to_path_buf(),
            ca_pem: read(dir.join("ca.pem"))?,
            cert_pem: read(file(".pem"))?,
            key_pem: read(file(".key"))?,
            curve,
            curve_allow,
            token: read(file(".token"))?.trim().to_string(),
            token_secret,
        })
    }

    /// Whether `token` is `who`'s token, by the cluster secret, in constant time. `false`
    /// when this folder has no secret.
    pub fn check_token(&self, who: Identity, token: &str) -> bool {
        self.token_secret.as_deref().is_some_and(|s| verify_token(s, who, token))
    }
}

fn parse_curve_pair(text: &str) -> Result<CurveKeyPair, String> {
    let mut public = None;
    let mut secret = None;
    for line in text.lines() {
        let Some((k, v)) = line.split_once('=') else { continue };
        let key = z85::decode_key(v.trim()).ok_or_else(|| format!("{} is not a Z85 key", k.trim()))?;
        match k.trim() {
            "public" => public = Some(key),
            "secret" => secret = Some(key),
            _ => {}
        }
    }
    match (public, secret) {
        (Some(public), Some(secret)) => Ok(CurveKeyPair { public, secret }),
        _ => Err("needs a public and a secret line".into()),
    }
}

fn parse_allow_list(text: &str) -> Result<BTreeMap<[u8; 32], Identity>, String> {
    let mut out = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (who, key) = line.split_once(' ').ok_or_else(|| format!("line {}: want `<id> <key>`", n + 1))?;
        let who: Identity = who.parse().map_err(|e: BadIdentity| format!("line {}: {e}", n + 1))?;
        let key = z85::decode_key(key.trim()).ok_or_else(|| format!("line {}: not a Z85 key", n + 1))?;
        out.insert(key, who);
    }
    Ok(out)
}

pub(crate) fn hex_encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn hex_decode(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_round_trip_and_permit_only_themselves() {
        for s in ["acceptor-1", "proposer-3", "learner-2", "client", "operator"] {
            assert_eq!(s.parse::<Identity>().unwrap().to_string(), s);
        }
        assert!("client-3".parse::<Identity>().is_err(), "a client's number is not an identity");
        assert!("bogus".parse::<Identity>().is_err());
        let a1 = Identity::Node(NodeId::acceptor(1));
        assert!(a1.permits(NodeId::acceptor(1)));
        assert!(!a1.permits(NodeId::acceptor(2)));
        assert!(Identity::Client.permits(NodeId::client(77)));
        assert!(!Identity::Client.permits(NodeId::proposer(1)));
        assert!(!Identity::Operator.permits(NodeId::proposer(1)));
    }

    #[test]
    fn generated_folder_loads_for_every_identity() {
        let dir = std::env::temp_dir().join(format!("ballot-creds-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let nodes = [NodeId::proposer(1), NodeId::acceptor(1), NodeId::learner(1)];
        generate(&dir, &nodes).unwrap();
        let mut keys = std::collections::BTreeSet::new();
        for who in nodes.iter().map(|n| Identity::Node(*n)).chain([Identity::Client, Identity::Operator]) {
            let c = Credentials::load(&dir, who).unwrap();
            assert_eq!(c.curve_allow.get(&c.curve.public), Some(&who), "{who} is on the allow-list");
            assert!(c.check_token(who, &c.token), "{who}'s token checks");
            assert!(!c.check_token(Identity::Operator, &c.token) || who == Identity::Operator);
            assert!(c.cert_pem.contains("BEGIN CERTIFICATE") && c.key_pem.contains("PRIVATE KEY"));
            assert!(keys.insert(c.curve.public), "key pairs differ");
        }
        let missing = Credentials::load(&dir, Identity::Node(NodeId::acceptor(9))).unwrap_err();
        assert!(missing.to_string().contains("ballot certs"), "{missing}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

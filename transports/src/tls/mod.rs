//! Mutual TLS for the tcp transport: the rustls configurations built from a node's
//! [`Credentials`], and who a verified peer certificate names.
//!
//! Both ends prove who they are with a certificate signed by the cluster's CA (`ca.pem`,
//! the only trust root). The dialer checks the listener's certificate against the name it
//! means to reach, [`server_name`] of the peer ([`Identity::of`]: a `client-N` is reached
//! as `client`); the listener requires a client certificate from the same CA and reads the
//! dialer's identity from its one DNS name ([`peer_identity`]). TLS 1.3 only, on the ring
//! provider; no session tickets (connections are long-lived and never resumed).
//!
//! Each configuration is built once per transport ([`TlsConfigs::new`]) and shared by
//! every connection.

mod der;

use crate::auth::{Credentials, Identity};
use ballot_core::NodeId;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use std::sync::Arc;

/// Credentials that rustls cannot use.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM block did not parse.
    #[error("{what} of {identity} in {dir} is not valid PEM: {why}; make credentials again with `ballot certs`")]
    Pem {
        /// Which part (`ca.pem`, the certificate, the key).
        what: &'static str,
        /// Whose.
        identity: Identity,
        /// The credentials folder.
        dir: String,
        /// What the parser said.
        why: String,
    },
    /// rustls refused the certificates or the key.
    #[error("the TLS credentials of {identity} are not usable: {why}")]
    Refused {
        /// Whose.
        identity: Identity,
        /// What rustls said.
        why: String,
    },
}

/// The rustls configurations of one endpoint, built once and shared by its connections.
#[derive(Clone, Debug)]
pub struct TlsConfigs {
    /// For dialling: trusts only the CA, presents this endpoint's certificate.
    pub client: Arc<ClientConfig>,
    /// For accepting: requires a client certificate from the CA, presents this
    /// endpoint's certificate.
    pub server: Arc<ServerConfig>,
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl TlsConfigs {
    /// Builds both configurations from `creds`.
    pub fn new(creds: &Credentials) -> Result<TlsConfigs, TlsError> {
        let identity = creds.identity;
        let pem_err = |what: &'static str| {
            move |e: rustls::pki_types::pem::Error| TlsError::Pem {
                what,
                identity,
                dir: creds.dir.display().to_string(),
                why: e.to_string(),
            }
        };
        let refused = |e: &dyn std::fmt::Display| TlsError::Refused { identity, why: e.to_string() };
        let mut roots = RootCertStore::empty();
        for ca in CertificateDer::pem_slice_iter(creds.ca_pem.as_bytes()) {
            roots.add(ca.map_err(pem_err("ca.pem"))?).map_err(|e| refused(&e))?;
        }
        if roots.is_empty() {
            return Err(refused(&"ca.pem holds no certificate"));
        }
        let roots = Arc::new(roots);
        let chain = CertificateDer::pem_slice_iter(creds.cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(pem_err("the certificate"))?;
        let key = PrivateKeyDer::from_pem_slice(creds.key_pem.as_bytes()).map_err(pem_err("the key"))?;

        let client = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| refused(&e))?
            .with_root_certificates(roots.clone())
            .with_client_auth_cert(chain.clone(), key.clone_key())
            .map_err(|e| refused(&e))?;
        let verifier =
            WebPkiClientVerifier::builder_with_provider(roots, provider()).build().map_err(|e| refused(&e))?;
        let mut server = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| refused(&e))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .map_err(|e| refused(&e))?;
        // Nothing is ever resumed, and a dialer never reads what a listener would send.
        server.send_tls13_tickets = 0;
        Ok(TlsConfigs { client: Arc::new(client), server: Arc::new(server) })
    }
}

/// The name a dialer verifies the listener's certificate against to reach `peer`: the
/// identity `peer` must prove ([`Identity::of`]).
pub fn server_name(peer: NodeId) -> ServerName<'static> {
    // Every identity is letters, digits and a hyphen: a valid DNS name.
    ServerName::try_from(Identity::of(peer).to_string()).expect("an identity is a DNS name")
}

/// Who a verified certificate names: its one DNS name as an [`Identity`], confirmed by
/// webpki's own name check. `None` for a certificate with no DNS name, several, or one
/// that is not an identity.
pub fn identity_in_cert(cert: &CertificateDer<'_>) -> Option<Identity> {
    let names = der::dns_names(cert.as_ref())?;
    let [name] = names[..] else { return None };
    let identity: Identity = name.parse().ok()?;
    let parsed = webpki::EndEntityCert::try_from(cert).ok()?;
    let as_server_name = ServerName::try_from(name).ok()?;
    parsed.verify_is_valid_for_subject_name(&as_server_name).ok()?;
    Some(identity)
}

/// The identity of the peer of a finished handshake, from the first certificate it
/// presented (rustls has verified the chain to the CA).
pub fn peer_identity(conn: &rustls::CommonState) -> Option<Identity> {
    identity_in_cert(conn.peer_certificates()?.first()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_are_read_from_generated_certificates() {
        let dir = std::env::temp_dir().join(format!("ballot-tls-{}", std::process::id()));
        let nodes = [NodeId::acceptor(3), NodeId::proposer(1)];
        crate::auth::generate(&dir, &nodes).unwrap();
        for who in [Identity::Node(NodeId::acceptor(3)), Identity::Client, Identity::Operator] {
            let creds = Credentials::load(&dir, who).unwrap();
            TlsConfigs::new(&creds).unwrap();
            let der = CertificateDer::from_pem_slice(creds.cert_pem.as_bytes()).unwrap();
            assert_eq!(identity_in_cert(&der), Some(who));
        }
        let ca = CertificateDer::from_pem_slice(std::fs::read(dir.join("ca.pem")).unwrap().as_slice()).unwrap();
        assert_eq!(identity_in_cert(&ca), None, "the CA names no identity");
        assert_eq!(server_name(NodeId::client(42)).to_str(), "client");
        assert_eq!(server_name(NodeId::learner(2)).to_str(), "learner-2");
        let mut creds = Credentials::load(&dir, Identity::Client).unwrap();
        creds.key_pem = "-----BEGIN PRIVATE KEY-----\nnot base64\n-----END PRIVATE KEY-----\n".into();
        let e = TlsConfigs::new(&creds).unwrap_err().to_string();
        assert!(e.contains("the key of client") && e.contains("ballot certs"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

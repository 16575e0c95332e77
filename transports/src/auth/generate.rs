//! Writing a credentials folder: a CA, a certificate, key, CURVE pair and token per
//! identity, the allow-list and the cluster secret (see the table in [`super`]).

use super::{hex_encode, token_for, z85, Identity, TOKEN_SECRET_BYTES};
use ballot_core::NodeId;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Credentials could not be written.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    /// A file could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The certificate library refused.
    #[error("cannot make a certificate: {0}")]
    Cert(#[from] rcgen::Error),
    /// The OS gave no random bytes.
    #[error("no randomness from the OS: {0}")]
    Random(String),
}

/// Fills `buf` from the OS's random source.
pub(crate) fn random(buf: &mut [u8]) -> Result<(), GenerateError> {
    getrandom::getrandom(buf).map_err(|e| GenerateError::Random(e.to_string()))
}

/// Writes `path`; `secret` files are readable by their owner only.
fn write(path: PathBuf, text: &str, secret: bool) -> Result<(), GenerateError> {
    let wrap = |source| GenerateError::Write { path: path.clone(), source };
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(if secret { 0o600 } else { 0o644 });
    }
    let mut f = opts.open(&path).map_err(wrap)?;
    f.write_all(text.as_bytes()).map_err(wrap)
}

/// A fresh CURVE key pair.
pub(crate) fn curve_pair() -> Result<super::CurveKeyPair, GenerateError> {
    let mut secret = [0u8; 32];
    random(&mut secret)?;
    let public = *crypto_box::SecretKey::from(secret).public_key().as_bytes();
    Ok(super::CurveKeyPair { public, secret })
}

/// The CA's parameters: the same every time, so that the CA can be rebuilt from its key
/// ([`issue`]) and what it signs then verifies under the `ca.pem` written first (a
/// certificate's issuer is matched by name and checked with the CA's public key).
fn ca_params() -> CertificateParams {
    let mut ca_params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "ballot cluster CA");
    ca_params.distinguished_name = dn;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca_params
}

/// Writes a fresh set of credentials for `nodes`, a client and an operator into `dir`
/// (created if missing; files of the same names are replaced).
pub fn generate(dir: &Path, nodes: &[NodeId]) -> Result<(), GenerateError> {
    std::fs::create_dir_all(dir).map_err(|source| GenerateError::Write { path: dir.to_path_buf(), source })?;
    let ca_key = KeyPair::generate()?;
    let ca = ca_params().self_signed(&ca_key)?;
    write(dir.join("ca.pem"), &ca.pem(), false)?;
    write(dir.join("ca.key"), &ca_key.serialize_pem(), true)?;

    let mut secret = [0u8; TOKEN_SECRET_BYTES];
    random(&mut secret)?;
    write(dir.join("token.secret"), &hex_encode(&secret), true)?;

    let mut identities: Vec<Identity> =
        nodes.iter().map(|n| Identity::of(*n)).chain([Identity::Client, Identity::Operator]).collect();
    identities.sort();
    identities.dedup();
    let mut allow = String::from("# CURVE public keys of the cluster: identity, Z85 key\n");
    for who in identities {
        allow.push_str(&write_identity(dir, who, &ca, &ca_key, &secret)?);
    }
    write(dir.join("curve.allow"), &allow, false)
}

/// Adds `who` to an existing folder (a node that joins a running cluster): a certificate
/// signed by the folder's CA (`ca.key` must be there), a key, a CURVE pair appended to
/// `curve.allow`, and a token from `token.secret`. Endpoints already running trust its
/// certificate at once; a CURVE allow-list is read at start, so only those started later
/// know its key.
pub fn issue(dir: &Path, who: Identity) -> Result<(), GenerateError> {
    let read = |name: &str| {
        let path = dir.join(name);
        std::fs::read_to_string(&path).map_err(|source| GenerateError::Write { path, source })
    };
    let ca_key = KeyPair::from_pem(&read("ca.key")?)?;
    let ca = ca_params().self_signed(&ca_key)?;
    let secret = super::hex_decode(read("token.secret")?.trim()).ok_or_else(|| GenerateError::Write {
        path: dir.join("token.secret"),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, "not hex"),
    })?;
    let line = write_identity(dir, who, &ca, &ca_key, &secret)?;
    let mut allow = read("curve.allow")?;
    allow.push_str(&line);
    write(dir.join("curve.allow"), &allow, false)
}

/// Writes `who`'s certificate, key, CURVE pair and token; returns its allow-list line.
fn write_identity(
    dir: &Path,
    who: Identity,
    ca: &rcgen::Certificate,
    ca_key: &KeyPair,
    secret: &[u8],
) -> Result<String, GenerateError> {
    let name = who.to_string();
    let mut params = CertificateParams::new(vec![name.clone()])?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name.clone());
    params.distinguished_name = dn;
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, ca, ca_key)?;
    write(dir.join(format!("{name}.pem")), &cert.pem(), false)?;
    write(dir.join(format!("{name}.key")), &key.serialize_pem(), true)?;
    let pair = curve_pair()?;
    let curve = format!("public = {}\nsecret = {}\n", z85::encode(&pair.public), z85::encode(&pair.secret));
    write(dir.join(format!("{name}.curve")), &curve, true)?;
    write(dir.join(format!("{name}.token")), &token_for(secret, who), true)?;
    Ok(format!("{name} {}\n", z85::encode(&pair.public)))
}

//! Operator-plane tokens: `HMAC-SHA256(cluster secret, identity)`. A verifier that holds
//! the secret recomputes the token of the identity a caller claims and compares in
//! constant time, so a caller can neither forge a token nor learn one byte by timing.

use super::{hex_decode, hex_encode, Identity};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Bytes of a cluster secret.
pub const TOKEN_SECRET_BYTES: usize = 32;

fn mac(secret: &[u8], who: Identity) -> Hmac<Sha256> {
    let mut m = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes a key of any length");
    m.update(b"ballot-token-v1:");
    m.update(who.to_string().as_bytes());
    m
}

/// `who`'s token under `secret`, as hex.
pub fn token_for(secret: &[u8], who: Identity) -> String {
    hex_encode(&mac(secret, who).finalize().into_bytes())
}

/// Whether `token` (hex) is `who`'s token under `secret`; constant time in the token.
pub fn verify_token(secret: &[u8], who: Identity, token: &str) -> bool {
    match hex_decode(token.trim()) {
        Some(bytes) => mac(secret, who).verify_slice(&bytes).is_ok(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ballot_core::NodeId;

    #[test]
    fn a_token_checks_only_for_its_identity_and_secret() {
        let a = Identity::Node(NodeId::acceptor(1));
        let t = token_for(b"secret-1", a);
        assert!(verify_token(b"secret-1", a, &t));
        assert!(!verify_token(b"secret-2", a, &t));
        assert!(!verify_token(b"secret-1", Identity::Operator, &t));
        assert!(!verify_token(b"secret-1", a, &t[..t.len() - 2]));
        assert!(!verify_token(b"secret-1", a, "zz"));
    }
}

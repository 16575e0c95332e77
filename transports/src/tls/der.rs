//! Just enough DER to read the DNS names of a certificate's subjectAltName extension.
//!
//! Only certificates that rustls has already verified against the cluster's CA get here,
//! and the name found is checked once more with webpki (see [`super::identity_in_cert`]);
//! still, every length is checked against what is left and anything unexpected is `None`,
//! never a panic.

/// The OID 2.5.29.17 (subjectAltName), DER-encoded without its tag and length.
const SUBJECT_ALT_NAME: [u8; 3] = [0x55, 0x1d, 0x11];
const SEQUENCE: u8 = 0x30;
const OID: u8 = 0x06;
const BOOLEAN: u8 = 0x01;
const OCTET_STRING: u8 = 0x04;
/// `[3] EXPLICIT Extensions` inside TBSCertificate.
const EXTENSIONS: u8 = 0xa3;
/// `GeneralName ::= ... dNSName [2] IA5String` (implicit, primitive).
const DNS_NAME: u8 = 0x82;

/// One tag-length-value: `(tag, value, rest)`. Multi-byte tags and lengths over 4 bytes
/// do not occur in certificates and are refused.
fn tlv(bytes: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = bytes.split_first()?;
    if tag & 0x1f == 0x1f {
        return None;
    }
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let (len_bytes, rest) = rest.split_at(n);
        (len_bytes.iter().fold(0usize, |acc, &b| (acc << 8) | b as usize), rest)
    };
    if rest.len() < len {
        return None;
    }
    let (value, rest) = rest.split_at(len);
    Some((tag, value, rest))
}

/// The value of a TLV that must have tag `want`, and what follows it.
fn expect(bytes: &[u8], want: u8) -> Option<(&[u8], &[u8])> {
    match tlv(bytes)? {
        (tag, value, rest) if tag == want => Some((value, rest)),
        _ => None,
    }
}

/// The DNS names in `cert`'s subjectAltName, in order (empty when it has none); `None`
/// when the certificate does not parse.
pub(crate) fn dns_names(cert: &[u8]) -> Option<Vec<&str>> {
    let (certificate, _) = expect(cert, SEQUENCE)?;
    let (mut tbs, _) = expect(certificate, SEQUENCE)?;
    while !tbs.is_empty() {
        let (tag, value, rest) = tlv(tbs)?;
        tbs = rest;
        if tag == EXTENSIONS {
            let (mut extensions, _) = expect(value, SEQUENCE)?;
            while !extensions.is_empty() {
                let (extension, rest) = expect(extensions, SEQUENCE)?;
                extensions = rest;
                let (oid, mut rest) = expect(extension, OID)?;
                if oid != SUBJECT_ALT_NAME {
                    continue;
                }
                if rest.first() == Some(&BOOLEAN) {
                    rest = expect(rest, BOOLEAN)?.1;
                }
                let (octets, _) = expect(rest, OCTET_STRING)?;
                let (mut names, _) = expect(octets, SEQUENCE)?;
                let mut out = Vec::new();
                while !names.is_empty() {
                    let (tag, value, rest) = tlv(names)?;
                    names = rest;
                    if tag == DNS_NAME {
                        out.push(std::str::from_utf8(value).ok()?);
                    }
                }
                return Some(out);
            }
        }
    }
    Some(Vec::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert_with(names: &[&str]) -> Vec<u8> {
        let params = rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn reads_the_dns_names_rcgen_wrote() {
        assert_eq!(dns_names(&cert_with(&["acceptor-1"])), Some(vec!["acceptor-1"]));
        assert_eq!(dns_names(&cert_with(&["a", "client"])), Some(vec!["a", "client"]));
        assert_eq!(dns_names(&cert_with(&[])), Some(vec![]));
    }

    #[test]
    fn anything_cut_or_garbled_is_none_not_a_panic() {
        let der = cert_with(&["learner-2"]);
        for n in 0..der.len() {
            let cut = dns_names(&der[..n]);
            assert!(cut.is_none() || cut == Some(vec![]), "cut at {n}: {cut:?}");
        }
        let mut rng = 7u64;
        for _ in 0..2000 {
            let mut bad = der.clone();
            rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let at = (rng >> 33) as usize % bad.len();
            bad[at] = (rng >> 17) as u8;
            let _ = dns_names(&bad);
        }
        assert_eq!(dns_names(&[]), None);
        assert_eq!(dns_names(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
    }
}

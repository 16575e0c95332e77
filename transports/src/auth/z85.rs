//! Z85 (rfc.zeromq.org/spec/32), the text form ZeroMQ tools print CURVE keys in.

const ALPHABET: &[u8; 85] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#";

/// Encodes `data` (its length a multiple of 4) as Z85.
pub fn encode(data: &[u8]) -> String {
    assert!(data.len().is_multiple_of(4), "Z85 encodes whole 4-byte groups");
    let mut out = String::with_capacity(data.len() * 5 / 4);
    for chunk in data.chunks(4) {
        let mut v = u32::from_be_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        let mut group = [0u8; 5];
        for c in group.iter_mut().rev() {
            *c = ALPHABET[(v % 85) as usize];
            v /= 85;
        }
        out.extend(group.iter().map(|&c| c as char));
    }
    out
}

/// Decodes Z85 text (its length a multiple of 5); `None` on any other character or an
/// overflowing group.
pub fn decode(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(5) {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() * 4 / 5);
    for group in bytes.chunks(5) {
        let mut v: u64 = 0;
        for &c in group {
            let digit = ALPHABET.iter().position(|&a| a == c)? as u64;
            v = v * 85 + digit;
        }
        out.extend_from_slice(&u32::try_from(v).ok()?.to_be_bytes());
    }
    Some(out)
}

/// Decodes a 40-character Z85 key into 32 bytes.
pub fn decode_key(text: &str) -> Option<[u8; 32]> {
    decode(text)?.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spec_example_round_trips() {
        // The test vector of rfc.zeromq.org/spec/32.
        let data = [0x86, 0x4F, 0xD2, 0x6F, 0xB5, 0x59, 0xF7, 0x5B];
        assert_eq!(encode(&data), "HelloWorld");
        assert_eq!(decode("HelloWorld").unwrap(), data);
        assert!(decode("Hello").is_some() && decode("Hell").is_none() && decode("Hell~").is_none());
        assert!(decode("#####").is_none(), "a group over 2^32 is refused");
    }
}

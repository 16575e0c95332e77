//! CurveZMQ (rfc.zeromq.org/spec/26), the CURVE mechanism of ZMTP 3: the four handshake
//! commands and the sealed MESSAGE, on RustCrypto's `crypto_box` (NaCl's `crypto_box`:
//! X25519, then XSalsa20-Poly1305) and `crypto_secretbox` (the same cipher under a
//! symmetric key, for the server's cookie). No I/O here: [`super::dial`] and
//! [`super::pull`] move the bytes.
//!
//! The exchange, with `C`/`c` the client's long-term public/secret key, `S`/`s` the
//! server's, primes for the transient keys made afresh for each connection, and `Box[x](A->B)`
//! `x` sealed with A's secret key for B's public key:
//! - HELLO (client): `C'`, `Box[64 zero bytes](C'->S)`. Only a client that knows `S` can
//!   make it; the server learns `C'`.
//! - WELCOME (server): `Box[S' + cookie](S->C')`, where the cookie is `C' + s'` sealed
//!   under a key only this server holds, so the server need not trust what comes back.
//! - INITIATE (client): the cookie, `Box[C + vouch + metadata](C'->S')`, where the vouch
//!   `Box[C' + S](C->S')` proves that the holder of `c` made `C'` for this server.
//! - READY (server): `Box[metadata](S'->C')`.
//!
//! Then every message is `Box[flags + data](C'->S')` (or `S'->C'`) under the 24-byte nonce
//! `"CurveZMQMESSAGEC"` (or `...S`) + an 8-byte counter, which must grow on each message:
//! a replayed or reordered box is refused. Nonces and counters follow libzmq: the client
//! numbers HELLO 1, INITIATE 2 and its messages from 3; the server numbers READY 1 and its
//! messages from 2.

use super::zmtp;
use crate::auth::CurveKeyPair;
use crypto_box::aead::consts::{U16, U24};
use crypto_box::aead::AeadInPlace;
use crypto_box::{Nonce, PublicKey, SalsaBox, SecretKey, Tag};
use crypto_secretbox::{KeyInit, XSalsa20Poly1305};
use std::io;
use std::ops::Range;

/// Bytes of a box's authenticator, which comes before the ciphertext.
const MAC: usize = 16;
/// Bytes a sealed MESSAGE adds to the data it carries: `\x07MESSAGE`, the 8-byte nonce,
/// the authenticator, the flags byte.
pub(crate) const MESSAGE_OVERHEAD: usize = 8 + 8 + MAC + 1;
/// Where a sealed frame's flags byte sits, counted from its ZMTP header: what
/// [`put_message_prefix`] writes before the data.
pub(crate) const SEALED_PREFIX: usize = zmtp::LONG_HEADER_LEN + MESSAGE_OVERHEAD;

const MESSAGE_FROM_CLIENT: &[u8; 16] = b"CurveZMQMESSAGEC";
const MESSAGE_FROM_SERVER: &[u8; 16] = b"CurveZMQMESSAGES";
/// Flags inside a sealed message (libzmq's `msg_t` bits).
const SEALED_MORE: u8 = 0x01;
const SEALED_COMMAND: u8 = 0x02;

/// Why a CURVE handshake or message failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum CurveError {
    /// Not the command expected, or not its size: the peer does not speak CURVE.
    Malformed(&'static str),
    /// A box that does not open or holds the wrong keys, or a nonce that did not grow: the
    /// peer is not who it must be, or the bytes were changed on the way.
    Crypto(&'static str),
    /// The OS gave no random bytes.
    Random,
}

impl std::fmt::Display for CurveError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CurveError::Malformed(what) => write!(f, "malformed CURVE {what}"),
            CurveError::Crypto(what) => write!(f, "CURVE {what} does not open"),
            CurveError::Random => f.write_str("no randomness from the OS"),
        }
    }
}

fn nonce(prefix: &[u8], tail: &[u8]) -> Nonce {
    let mut n = Nonce::default();
    n[..prefix.len()].copy_from_slice(prefix);
    n[prefix.len()..].copy_from_slice(tail);
    n
}

fn random<const N: usize>() -> Result<[u8; N], CurveError> {
    let mut b = [0; N];
    getrandom::getrandom(&mut b).map_err(|_| CurveError::Random)?;
    Ok(b)
}

/// `plain` sealed: the authenticator, then the ciphertext (NaCl's box without its zero
/// padding, as it travels).
fn seal(
    key: &impl AeadInPlace<NonceSize = U24, TagSize = U16>,
    n: &Nonce,
    plain: &[u8],
) -> Result<Vec<u8>, CurveError> {
    let mut out = vec![0; MAC + plain.len()];
    out[MAC..].copy_from_slice(plain);
    let tag = key.encrypt_in_place_detached(n, b"", &mut out[MAC..]).map_err(|_| CurveError::Crypto("seal"))?;
    out[..MAC].copy_from_slice(&tag);
    Ok(out)
}

/// What `boxed` holds, if it opens under `key` and `n`.
fn open(
    key: &impl AeadInPlace<NonceSize = U24, TagSize = U16>,
    n: &Nonce,
    boxed: &[u8],
    what: &'static str,
) -> Result<Vec<u8>, CurveError> {
    let (tag, ciphertext) = boxed.split_at_checked(MAC).ok_or(CurveError::Malformed(what))?;
    let mut plain = ciphertext.to_vec();
    key.decrypt_in_place_detached(n, b"", &mut plain, Tag::from_slice(tag)).map_err(|_| CurveError::Crypto(what))?;
    Ok(plain)
}

fn key_pair() -> Result<(SecretKey, [u8; 32]), CurveError> {
    let secret = SecretKey::from(random::<32>()?);
    let public = *secret.public_key().as_bytes();
    Ok((secret, public))
}

/// The body of an ERROR command: the reason, at most 255 bytes.
pub(crate) fn error_body(reason: &str) -> Vec<u8> {
    let reason = &reason.as_bytes()[..reason.len().min(255)];
    [b"\x05ERROR".as_slice(), &[reason.len() as u8], reason].concat()
}

/// The reason an ERROR command body gives, if it is one.
pub(crate) fn error_reason(cmd: &[u8]) -> Option<String> {
    let rest = cmd.strip_prefix(b"\x05ERROR")?;
    let (&n, reason) = rest.split_first()?;
    Some(String::from_utf8_lossy(reason.get(..n as usize)?).into_owned())
}

/// The message cipher of a connection past its handshake, one direction each way.
pub(crate) struct Cipher {
    key: SalsaBox,
    send: &'static [u8; 16],
    recv: &'static [u8; 16],
    /// The short nonce of our next box.
    next: u64,
    /// The peer's last short nonce: each must be greater.
    seen: u64,
}

/// Appends a frame prefix for `data_len` bytes of data with `flags` (zmtp's MORE and
/// COMMAND bits): the ZMTP header, `\x07MESSAGE`, room for the nonce and the
/// authenticator, the sealed flags. The data follows; [`Cipher::seal_in_place`] fills in
/// the rest.
pub(crate) fn put_message_prefix(out: &mut Vec<u8>, flags: u8, data_len: usize) {
    out.extend_from_slice(&zmtp::message_header((data_len + MESSAGE_OVERHEAD) as u64));
    out.extend_from_slice(b"\x07MESSAGE");
    out.extend_from_slice(&[0; 8 + MAC]);
    let more = if flags & zmtp::MORE != 0 { SEALED_MORE } else { 0 };
    out.push(more | if flags & zmtp::COMMAND != 0 { SEALED_COMMAND } else { 0 });
}

impl Cipher {
    /// Seals one frame laid out by [`put_message_prefix`] and its data, in place.
    pub(crate) fn seal_in_place(&mut self, frame: &mut [u8]) -> io::Result<()> {
        let h = zmtp::LONG_HEADER_LEN;
        let short = self.next.to_be_bytes();
        self.next += 1;
        frame[h + 8..h + 16].copy_from_slice(&short);
        let n = nonce(self.send, &short);
        let tag = self
            .key
            .encrypt_in_place_detached(&n, b"", &mut frame[SEALED_PREFIX - 1..])
            .map_err(|_| io::Error::other("CURVE seal"))?;
        frame[h + 16..h + 16 + MAC].copy_from_slice(&tag);
        Ok(())
    }

    /// Appends `data` as one sealed frame with `flags` (zmtp's MORE and COMMAND bits).
    pub(crate) fn seal_frame(&mut self, flags: u8, data: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
        let start = out.len();
        put_message_prefix(out, flags, data.len());
        out.extend_from_slice(data);
        self.seal_in_place(&mut out[start..])
    }

    /// Opens a MESSAGE frame's body in place: its flags (as zmtp's MORE and COMMAND bits)
    /// and where its data lies in `body`.
    pub(crate) fn open_in_place(&mut self, body: &mut [u8]) -> Result<(u8, Range<usize>), CurveError> {
        if body.len() < MESSAGE_OVERHEAD || !body.starts_with(b"\x07MESSAGE") {
            return Err(CurveError::Malformed("MESSAGE"));
        }
        let short: [u8; 8] = body[8..16].try_into().map_err(|_| CurveError::Malformed("MESSAGE"))?;
        let counter = u64::from_be_bytes(short);
        if counter <= self.seen {
            return Err(CurveError::Crypto("MESSAGE nonce"));
        }
        let (head, sealed) = body.split_at_mut(16 + MAC);
        let tag = Tag::from_slice(&head[16..]);
        self.key
            .decrypt_in_place_detached(&nonce(self.recv, &short), b"", sealed, tag)
            .map_err(|_| CurveError::Crypto("MESSAGE"))?;
        self.seen = counter;
        let inner = sealed[0];
        let more = if inner & SEALED_MORE != 0 { zmtp::MORE } else { 0 };
        let flags = more | if inner & SEALED_COMMAND != 0 { zmtp::COMMAND } else { 0 };
        Ok((flags, MESSAGE_OVERHEAD..body.len()))
    }

    /// The server's READY command body, announcing `metadata`.
    pub(crate) fn ready(&mut self, metadata: &[u8]) -> Result<Vec<u8>, CurveError> {
        let short = self.next.to_be_bytes();
        self.next += 1;
        let boxed = seal(&self.key, &nonce(b"CurveZMQREADY---", &short), metadata)?;
        Ok([b"\x05READY".as_slice(), &short, &boxed].concat())
    }
}

/// The client side of a handshake: it knows the server's long-term key.
pub(crate) struct Client {
    ours: SecretKey,
    ours_public: [u8; 32],
    server: PublicKey,
    transient: SecretKey,
    transient_public: [u8; 32],
    /// After WELCOME: the server's transient key, and the cookie to send back.
    welcomed: Option<(PublicKey, [u8; 96])>,
}

impl Client {
    /// A client with our long-term pair that expects the server to hold `server`'s secret.
    pub(crate) fn new(ours: &CurveKeyPair, server: [u8; 32]) -> Result<Self, CurveError> {
        let (transient, transient_public) = key_pair()?;
        Ok(Client {
            ours: SecretKey::from(ours.secret),
            ours_public: ours.public,
            server: PublicKey::from(server),
            transient,
            transient_public,
            welcomed: None,
        })
    }

    /// The HELLO command body (200 bytes).
    pub(crate) fn hello(&self) -> Result<Vec<u8>, CurveError> {
        let short = 1u64.to_be_bytes();
        let key = SalsaBox::new(&self.server, &self.transient);
        let boxed = seal(&key, &nonce(b"CurveZMQHELLO---", &short), &[0; 64])?;
        Ok([b"\x05HELLO\x01\x00".as_slice(), &[0; 72], &self.transient_public, &short, &boxed].concat())
    }

    /// Takes the server's WELCOME command body.
    pub(crate) fn welcome(&mut self, body: &[u8]) -> Result<(), CurveError> {
        if body.len() != 168 || !body.starts_with(b"\x07WELCOME") {
            return Err(CurveError::Malformed("WELCOME"));
        }
        let key = SalsaBox::new(&self.server, &self.transient);
        let plain = open(&key, &nonce(b"WELCOME-", &body[8..24]), &body[24..], "WELCOME")?;
        let server_transient: [u8; 32] = plain[..32].try_into().map_err(|_| CurveError::Malformed("WELCOME"))?;
        let cookie: [u8; 96] = plain[32..].try_into().map_err(|_| CurveError::Malformed("WELCOME"))?;
        self.welcomed = Some((PublicKey::from(server_transient), cookie));
        Ok(())
    }

    /// The INITIATE command body, announcing `metadata`; after [`Self::welcome`].
    pub(crate) fn initiate(&self, metadata: &[u8]) -> Result<Vec<u8>, CurveError> {
        let (server_transient, cookie) = self.welcomed.as_ref().ok_or(CurveError::Malformed("INITIATE order"))?;
        let vouch_nonce = random::<16>()?;
        let vouch_key = SalsaBox::new(server_transient, &self.ours);
        let vouch = seal(
            &vouch_key,
            &nonce(b"VOUCH---", &vouch_nonce),
            &[self.transient_public, *self.server.as_bytes()].concat(),
        )?;
        let plain = [self.ours_public.as_slice(), &vouch_nonce, &vouch, metadata].concat();
        let short = 2u64.to_be_bytes();
        let key = SalsaBox::new(server_transient, &self.transient);
        let boxed = seal(&key, &nonce(b"CurveZMQINITIATE", &short), &plain)?;
        Ok([b"\x08INITIATE".as_slice(), cookie, &short, &boxed].concat())
    }

    /// Takes the server's READY command body: the message cipher and the server's
    /// metadata.
    pub(crate) fn ready(self, body: &[u8]) -> Result<(Cipher, Vec<u8>), CurveError> {
        let (server_transient, _) = self.welcomed.as_ref().ok_or(CurveError::Malformed("READY order"))?;
        if body.len() < 14 + MAC || !body.starts_with(b"\x05READY") {
            return Err(CurveError::Malformed("READY"));
        }
        let key = SalsaBox::new(server_transient, &self.transient);
        let metadata = open(&key, &nonce(b"CurveZMQREADY---", &body[6..14]), &body[14..], "READY")?;
        let seen = u64::from_be_bytes(body[6..14].try_into().map_err(|_| CurveError::Malformed("READY"))?);
        let cipher = Cipher { key, send: MESSAGE_FROM_CLIENT, recv: MESSAGE_FROM_SERVER, next: 3, seen };
        Ok((cipher, metadata))
    }
}

/// What a server learns from a valid INITIATE.
pub(crate) struct Initiated {
    /// The client's long-term public key, which its vouch proves it holds the secret of.
    pub(crate) client: [u8; 32],
    /// The client's metadata (`Socket-Type` and the like).
    pub(crate) metadata: Vec<u8>,
    /// The connection's cipher, which still has to send READY.
    pub(crate) cipher: Cipher,
}

/// The server side of a handshake, with our long-term key pair.
pub(crate) struct Server {
    ours: SecretKey,
    ours_public: [u8; 32],
    transient: SecretKey,
    transient_public: [u8; 32],
    cookie_key: [u8; 32],
    /// After HELLO: the client's transient key.
    client_transient: Option<[u8; 32]>,
}

impl Server {
    /// A server for one connection: fresh transient keys and cookie key.
    pub(crate) fn new(ours: &CurveKeyPair) -> Result<Self, CurveError> {
        let (transient, transient_public) = key_pair()?;
        Ok(Server {
            ours: SecretKey::from(ours.secret),
            ours_public: ours.public,
            transient,
            transient_public,
            cookie_key: random()?,
            client_transient: None,
        })
    }

    /// Takes the client's HELLO command body: it opens only for the holder of our secret.
    pub(crate) fn hello(&mut self, body: &[u8]) -> Result<(), CurveError> {
        if body.len() != 200 || !body.starts_with(b"\x05HELLO") || body[6..8] != [1, 0] {
            return Err(CurveError::Malformed("HELLO"));
        }
        let client_transient: [u8; 32] = body[80..112].try_into().map_err(|_| CurveError::Malformed("HELLO"))?;
        let key = SalsaBox::new(&PublicKey::from(client_transient), &self.ours);
        open(&key, &nonce(b"CurveZMQHELLO---", &body[112..120]), &body[120..], "HELLO")?;
        self.client_transient = Some(client_transient);
        Ok(())
    }

    fn cookie_box(&self) -> XSalsa20Poly1305 {
        XSalsa20Poly1305::new(&self.cookie_key.into())
    }

    /// The WELCOME command body (168 bytes); after [`Self::hello`].
    pub(crate) fn welcome(&self) -> Result<Vec<u8>, CurveError> {
        let client_transient = self.client_transient.ok_or(CurveError::Malformed("WELCOME order"))?;
        let cookie_nonce = random::<16>()?;
        let secret = self.transient.to_bytes();
        let cookie =
            seal(&self.cookie_box(), &nonce(b"COOKIE--", &cookie_nonce), &[client_transient, secret].concat())?;
        let plain = [self.transient_public.as_slice(), &cookie_nonce, &cookie].concat();
        let welcome_nonce = random::<16>()?;
        let key = SalsaBox::new(&PublicKey::from(client_transient), &self.ours);
        let boxed = seal(&key, &nonce(b"WELCOME-", &welcome_nonce), &plain)?;
        Ok([b"\x07WELCOME".as_slice(), &welcome_nonce, &boxed].concat())
    }

    /// Takes the client's INITIATE command body: the cookie must be ours and name this
    /// connection's keys, the box must open, and the vouch must bind the client's
    /// long-term key to its transient key and to us.
    pub(crate) fn initiate(&self, body: &[u8]) -> Result<Initiated, CurveError> {
        let client_transient = self.client_transient.ok_or(CurveError::Malformed("INITIATE order"))?;
        if body.len() < 257 || !body.starts_with(b"\x08INITIATE") {
            return Err(CurveError::Malformed("INITIATE"));
        }
        let cookie = open(&self.cookie_box(), &nonce(b"COOKIE--", &body[9..25]), &body[25..105], "cookie")?;
        if cookie[..32] != client_transient || cookie[32..] != self.transient.to_bytes() {
            return Err(CurveError::Crypto("cookie"));
        }
        let short = &body[105..113];
        let key = SalsaBox::new(&PublicKey::from(client_transient), &self.transient);
        let plain = open(&key, &nonce(b"CurveZMQINITIATE", short), &body[113..], "INITIATE")?;
        let client: [u8; 32] = plain[..32].try_into().map_err(|_| CurveError::Malformed("INITIATE"))?;
        let vouch_key = SalsaBox::new(&PublicKey::from(client), &self.transient);
        let vouch = open(&vouch_key, &nonce(b"VOUCH---", &plain[32..48]), &plain[48..128], "vouch")?;
        if vouch[..32] != client_transient || vouch[32..] != self.ours_public {
            return Err(CurveError::Crypto("vouch"));
        }
        let seen = u64::from_be_bytes(short.try_into().map_err(|_| CurveError::Malformed("INITIATE"))?);
        let cipher = Cipher { key, send: MESSAGE_FROM_SERVER, recv: MESSAGE_FROM_CLIENT, next: 1, seen };
        Ok(Initiated { client, metadata: plain[128..].to_vec(), cipher })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> CurveKeyPair {
        let (secret, public) = key_pair().unwrap();
        CurveKeyPair { public, secret: secret.to_bytes() }
    }

    /// A whole handshake in memory, then messages both ways.
    fn handshake(
        client_keys: &CurveKeyPair,
        server_keys: &CurveKeyPair,
    ) -> Result<(Cipher, Cipher, [u8; 32]), CurveError> {
        let mut client = Client::new(client_keys, server_keys.public)?;
        let mut server = Server::new(server_keys)?;
        server.hello(&client.hello()?)?;
        client.welcome(&server.welcome()?)?;
        let init = server.initiate(&client.initiate(&zmtp::metadata("PUSH"))?)?;
        let mut server_cipher = init.cipher;
        let ready = server_cipher.ready(&zmtp::metadata("PULL"))?;
        let (client_cipher, meta) = client.ready(&ready)?;
        assert_eq!(zmtp::property(&meta, "Socket-Type"), Ok(Some(b"PULL".as_slice())));
        assert_eq!(zmtp::property(&init.metadata, "Socket-Type"), Ok(Some(b"PUSH".as_slice())));
        Ok((client_cipher, server_cipher, init.client))
    }

    fn body_of(frame: &[u8]) -> Vec<u8> {
        frame[zmtp::LONG_HEADER_LEN..].to_vec()
    }

    #[test]
    fn a_handshake_proves_the_client_and_messages_open_once_in_order() {
        let (ck, sk) = (pair(), pair());
        let (mut c, mut s, proven) = handshake(&ck, &sk).unwrap();
        assert_eq!(proven, ck.public, "the server learns the client's long-term key");
        let mut frames = Vec::new();
        for (i, data) in [b"one".as_slice(), b"", &[7; 300]].iter().enumerate() {
            let mut f = Vec::new();
            c.seal_frame(if i == 0 { zmtp::MORE } else { 0 }, data, &mut f).unwrap();
            let mut body = body_of(&f);
            let (flags, range) = s.open_in_place(&mut body).unwrap();
            assert_eq!((flags, &body[range]), (if i == 0 { zmtp::MORE } else { 0 }, *data));
            frames.push(body_of(&f));
        }
        let mut replay = frames[1].clone();
        assert_eq!(s.open_in_place(&mut replay), Err(CurveError::Crypto("MESSAGE nonce")), "a replayed box");
        let mut pong = Vec::new();
        s.seal_frame(zmtp::COMMAND, b"\x04PONG", &mut pong).unwrap();
        let mut body = body_of(&pong);
        let (flags, range) = c.open_in_place(&mut body).unwrap();
        assert_eq!((flags, &body[range]), (zmtp::COMMAND, b"\x04PONG".as_slice()));
        let mut tampered = Vec::new();
        c.seal_frame(0, b"vote", &mut tampered).unwrap();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert_eq!(s.open_in_place(&mut body_of(&tampered)), Err(CurveError::Crypto("MESSAGE")));
    }

    #[test]
    fn a_client_that_expects_another_server_is_refused_at_hello() {
        let (ck, sk, other) = (pair(), pair(), pair());
        let client = Client::new(&ck, other.public).unwrap();
        let mut server = Server::new(&sk).unwrap();
        assert_eq!(server.hello(&client.hello().unwrap()), Err(CurveError::Crypto("HELLO")));
    }

    #[test]
    fn a_vouch_from_another_key_or_a_forged_cookie_is_refused() {
        let (ck, sk) = (pair(), pair());
        let mut client = Client::new(&ck, sk.public).unwrap();
        let mut server = Server::new(&sk).unwrap();
        server.hello(&client.hello().unwrap()).unwrap();
        client.welcome(&server.welcome().unwrap()).unwrap();
        let good = client.initiate(b"").unwrap();
        let mut forged = good.clone();
        forged[30] ^= 1;
        assert_eq!(server.initiate(&forged).err(), Some(CurveError::Crypto("cookie")));
        // The client claims another long-term key than the one that made the vouch.
        let mut lying = Client::new(&pair(), sk.public).unwrap();
        lying.transient = client.transient.clone();
        lying.transient_public = client.transient_public;
        lying.welcomed = client.welcomed.clone();
        lying.ours_public = ck.public;
        assert_eq!(server.initiate(&lying.initiate(b"").unwrap()).err(), Some(CurveError::Crypto("vouch")));
        assert!(server.initiate(&good).is_ok());
        assert_eq!(server.initiate(&good[..200]).err(), Some(CurveError::Malformed("INITIATE")));
    }

    #[test]
    fn error_commands_round_trip() {
        assert_eq!(error_reason(&error_body("400")), Some("400".into()));
        assert_eq!(error_reason(b"\x05ERROR\x09abc"), None, "a reason past the end");
        assert_eq!(error_reason(b"\x05READY"), None);
    }
}

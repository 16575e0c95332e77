//! Raw connections for the byte-level cases: a socket past the transport's handshake, and
//! how to frame bodies on it. A plain framing ([`PlainDial`]: TCP's length prefix, NULL
//! ZMTP's greeting and frame header) is the same bytes on every connection; a secure one
//! (CURVE) does a real handshake and seals each frame, so that what the cases throw at a
//! node reaches the code behind its handshake.

use async_trait::async_trait;
use std::io;
use std::net::SocketAddr;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// What a raw connection is: bytes both ways.
pub trait RawIo: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> RawIo for T {}

/// How a transport frames bodies on one raw connection.
pub trait Framing: Send {
    /// The bytes that announce a body of `len` bytes; what follows is up to the caller
    /// (too few bytes, garbage, nothing).
    fn header(&mut self, len: u64) -> Vec<u8>;
    /// One whole frame carrying `body`, as a well-behaved peer would send it.
    fn frame(&mut self, body: &[u8]) -> Vec<u8> {
        [self.header(body.len() as u64), body.to_vec()].concat()
    }
}

/// A raw connection to a node, past its handshake.
pub struct RawSession {
    /// The connection.
    pub io: Box<dyn RawIo>,
    /// Its framing.
    pub framing: Box<dyn Framing>,
}

impl RawSession {
    /// [`Framing::header`] of this connection.
    pub fn header(&mut self, len: u64) -> Vec<u8> {
        self.framing.header(len)
    }

    /// [`Framing::frame`] of this connection.
    pub fn frame(&mut self, body: &[u8]) -> Vec<u8> {
        self.framing.frame(body)
    }
}

/// Opens raw sessions to one node; shared with attacker tasks.
#[async_trait]
pub trait RawDial: Send + Sync {
    /// A fresh connection, past its handshake.
    async fn session(&self) -> io::Result<RawSession>;
}

/// A framing that needs no handshake of its own: a fixed preamble, then a fixed header
/// before each body.
pub struct PlainDial {
    /// Where the node listens.
    pub addr: SocketAddr,
    /// What a client sends before its first frame.
    pub preamble: Vec<u8>,
    /// The header that announces a body of a length.
    pub header: fn(u64) -> Vec<u8>,
}

/// A framing that is a fixed header before each body, made by the function it holds.
pub(crate) struct PlainFraming(pub(crate) fn(u64) -> Vec<u8>);

impl Framing for PlainFraming {
    fn header(&mut self, len: u64) -> Vec<u8> {
        (self.0)(len)
    }
}

#[async_trait]
impl RawDial for PlainDial {
    async fn session(&self) -> io::Result<RawSession> {
        let mut s = TcpStream::connect(self.addr).await?;
        s.write_all(&self.preamble).await?;
        Ok(RawSession { io: Box::new(s), framing: Box::new(PlainFraming(self.header)) })
    }
}

//! A raw CURVE client for the conformance suite ([`crate::conformance`]): a real
//! handshake as some identity, then frames sealed as ours are, so that the suite's hostile
//! bodies reach the code behind a secure node's handshake.

use super::curve::{self, Cipher};
use super::dial::{self, DialPlan};
use super::zmtp;
use crate::auth::Credentials;
use crate::conformance::{Framing, RawDial, RawSession};
use async_trait::async_trait;
use ballot_core::NodeId;
use std::io;
use std::net::SocketAddr;
use tokio::net::TcpStream;

/// Opens CURVE sessions to the node `target` at `addr`, as the holder of `client`.
pub(crate) struct CurveRawDial {
    addr: SocketAddr,
    plan: DialPlan,
}

impl CurveRawDial {
    pub(crate) fn new(addr: SocketAddr, client: &Credentials, target: NodeId) -> Self {
        CurveRawDial { addr, plan: DialPlan::for_peer(target, Some(client)) }
    }
}

#[async_trait]
impl RawDial for CurveRawDial {
    async fn session(&self) -> io::Result<RawSession> {
        let stream = TcpStream::connect(self.addr).await?;
        stream.set_nodelay(true)?;
        let conn = dial::handshake(stream, &self.plan).await.map_err(|e| io::Error::other(e.to_string()))?;
        let cipher = conn.cipher.ok_or_else(|| io::Error::other("a CURVE dial without a cipher"))?;
        Ok(RawSession { io: Box::new(conn.stream), framing: Box::new(Sealed(cipher)) })
    }
}

/// Each body one sealed message; a bare header announces the box of a body that long.
struct Sealed(Cipher);

impl Framing for Sealed {
    fn header(&mut self, len: u64) -> Vec<u8> {
        zmtp::message_header(len.saturating_add(curve::MESSAGE_OVERHEAD as u64))
    }

    fn frame(&mut self, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        self.0.seal_frame(0, body, &mut out).expect("sealing takes no associated data, so it cannot fail");
        out
    }
}

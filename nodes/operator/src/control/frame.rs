//! One control frame on the wire: `[u32 big-endian length][rmp-serde body]`.
//!
//! The length is checked against the reader's limit before anything is read, and the body
//! is read into a buffer that grows as its bytes arrive: a caller that announces 64 MiB
//! and sends nothing costs the server a few bytes, not 64 MiB. (Allocating the announced
//! length up front let 40 half-sent frames reserve 2.6 GB.)

use super::ControlError;
use serde::{de::DeserializeOwned, Serialize};
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Writes `v` as one frame of at most `max` bytes.
pub(super) async fn write_frame<T: Serialize>(s: &mut TcpStream, v: &T, max: usize) -> std::io::Result<()> {
    let body = rmp_serde::to_vec(v).map_err(|e| std::io::Error::other(e.to_string()))?;
    if body.len() > max {
        return Err(std::io::Error::other(format!("control frame of {} bytes is too large", body.len())));
    }
    let mut buf = Vec::with_capacity(4 + body.len());
    buf.extend_from_slice(&(body.len() as u32).to_be_bytes());
    buf.extend_from_slice(&body);
    s.write_all(&buf).await
}

/// Reads one frame of at most `max` bytes; `Ok(None)` at a clean end of stream (before
/// its first byte). The caller bounds it with a deadline.
pub(super) async fn read_frame<T: DeserializeOwned>(s: &mut TcpStream, max: usize) -> Result<Option<T>, ControlError> {
    let addr = s.peer_addr().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    let io = |source| ControlError::Io { addr, source };
    let mut len = [0u8; 4];
    match s.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(io(e)),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > max {
        return Err(ControlError::Oversized { len, max });
    }
    // Grows as bytes arrive (read_to_end reserves in small steps, not `len`).
    let mut body = Vec::new();
    let got = (&mut *s).take(len as u64).read_to_end(&mut body).await.map_err(io)?;
    if got < len {
        return Err(io(std::io::ErrorKind::UnexpectedEof.into()));
    }
    rmp_serde::from_slice(&body).map(Some).map_err(|e| ControlError::Decode(e.to_string()))
}

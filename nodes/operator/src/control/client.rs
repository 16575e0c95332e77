//! [`ControlClient`]: one connection to a node's control channel.

use super::frame::{read_frame, write_frame};
use super::{ControlError, ControlReply, ControlRequest, Token, CONTROL_DEADLINE, CONTROL_IDENTITY, MAX_CONTROL_FRAME};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpStream;

/// A connection to one node's control channel.
pub struct ControlClient {
    addr: SocketAddr,
    stream: TcpStream,
}

impl ControlClient {
    /// Connects within [`CONTROL_DEADLINE`]; with `token` (the operator's, from
    /// `operator.token`), authenticates as [`CONTROL_IDENTITY`] first, so a node that
    /// checks tokens answers. Without one, only an open channel answers; a checking one
    /// refuses at the first request.
    pub async fn connect(addr: SocketAddr, token: Option<&str>) -> Result<Self, ControlError> {
        let stream = tokio::time::timeout(CONTROL_DEADLINE, TcpStream::connect(addr))
            .await
            .map_err(|_| ControlError::Timeout { addr })?
            .map_err(|source| ControlError::Io { addr, source })?;
        let _ = stream.set_nodelay(true);
        let mut c = ControlClient { addr, stream };
        if let Some(token) = token {
            let auth = ControlRequest::Auth { identity: CONTROL_IDENTITY.into(), token: Token(token.trim().into()) };
            match c.request(&auth, CONTROL_DEADLINE).await? {
                ControlReply::Ok => {}
                ControlReply::Error(reason) => return Err(ControlError::Refused { addr, reason }),
                other => return Err(ControlError::Decode(format!("{other:?} is no answer to Auth"))),
            }
        }
        Ok(c)
    }

    /// One request and its reply, within `deadline`.
    pub async fn request(&mut self, req: &ControlRequest, deadline: Duration) -> Result<ControlReply, ControlError> {
        let addr = self.addr;
        let exchange = async {
            write_frame(&mut self.stream, req, MAX_CONTROL_FRAME)
                .await
                .map_err(|source| ControlError::Io { addr, source })?;
            read_frame::<ControlReply>(&mut self.stream, MAX_CONTROL_FRAME).await?.ok_or(ControlError::Io {
                addr,
                source: std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "control connection closed"),
            })
        };
        tokio::time::timeout(deadline, exchange).await.map_err(|_| ControlError::Timeout { addr })?
    }
}

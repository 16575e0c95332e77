//! Our PULL side: one inbound connection, its handshake (NULL, or CURVE as the server,
//! which proves the client's key against the allow-list), then its messages. Every length
//! is checked against its limit before anything is read, a bad frame closes only its own
//! connection, and under CURVE every envelope must come from a sender the proven identity
//! permits.

use super::curve::{self, Cipher};
use super::dial::{check_socket_type, read_greeting, unexpected, HandshakeError};
use super::zmtp::{self, Mechanism};
use crate::auth::{Credentials, Identity};
use crate::envelope::Envelope;
use crate::link::{self, Counters, NetOptions, Refusal};
use crate::wire::{self, WireError};
use std::io;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::timeout;

/// What a handshake established.
struct Session {
    /// CURVE: the message cipher.
    cipher: Option<Cipher>,
    /// CURVE: who the peer proved to be.
    identity: Option<Identity>,
}

/// Why an inbound ZMTP connection ended early.
enum Ended {
    /// Closed cleanly, or the transport is gone.
    Quiet,
    /// The peer closed the connection or reset it, between messages or (`cut` set) in
    /// the middle of one: if the connection was in use, it most likely crashed.
    Closed {
        cut: bool,
    },
    /// Not ZMTP, a command out of place or over its limit, or too slow.
    Handshake(String),
    /// A handshake that proved no identity we accept.
    RefusedHandshake(String),
    Truncated,
    Refused(WireError),
    /// A sealed message that does not open (changed on the way, replayed, not CURVE).
    Unsealed,
}

/// Serves one inbound connection as a PULL socket: handshake, then messages.
pub(super) async fn serve_pull(
    stream: TcpStream,
    opts: Arc<NetOptions>,
    stats: Arc<Counters>,
    inbox: mpsc::Sender<Envelope>,
) {
    let peer = stream.peer_addr().ok();
    let mut conn = BufReader::with_capacity(64 * 1024, stream);
    let mut last = link::LastFrame::default();
    let ended = match timeout(opts.connect_timeout, accept(&mut conn, &opts)).await {
        Ok(Ok(session)) => read_messages(&mut conn, session, &opts, &stats, &inbox, &mut last).await,
        Ok(Err(HandshakeError::Quiet)) => Ended::Quiet,
        Ok(Err(HandshakeError::Refused(why))) => Ended::RefusedHandshake(why.to_string()),
        Ok(Err(HandshakeError::Bad(why))) => Ended::Handshake(format!("zmq: {why}")),
        Err(_) => Ended::Handshake("zmq: no handshake within the connect deadline".into()),
    };
    match ended {
        Ended::Quiet => {}
        Ended::Closed { cut } => {
            last.closed(&opts, &stats, &inbox);
            if cut {
                stats.refuse(Refusal::Truncated, peer, &"zmq: a message cut short or stalled");
            }
        }
        Ended::Handshake(why) => stats.refuse(Refusal::BadHandshake, peer, &why),
        Ended::RefusedHandshake(why) => stats.refuse(Refusal::RefusedHandshake, peer, &format!("zmq: {why}")),
        Ended::Truncated => stats.refuse(Refusal::Truncated, peer, &"zmq: a message cut short or stalled"),
        Ended::Refused(e) => stats.refused(&e, peer),
        Ended::Unsealed => stats.refuse(Refusal::Decode, peer, &"zmq: a sealed message that does not open"),
    }
}

/// Writes our opening (we speak first, as ZMTP allows, so a peer that waits for us is not
/// kept waiting), then reads the peer's greeting.
async fn greet(conn: &mut BufReader<TcpStream>, ours: &[u8], want: Mechanism) -> Result<(), HandshakeError> {
    // A probe may be gone already: its reset shows in the read below.
    let wrote = conn.get_mut().write_all(ours).await;
    let mut first = [0u8; 1];
    match conn.read(&mut first).await {
        // Closed before a byte (a port probe, such as a dialler's): no handshake at all.
        Ok(0) => return Err(HandshakeError::Quiet),
        // Closed with our greeting unread: the kernel answers with a reset.
        Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return Err(HandshakeError::Quiet),
        Err(e) => return Err(e.into()),
        Ok(_) => wrote?,
    }
    read_greeting(&mut (&first[..]).chain(&mut *conn), want).await
}

async fn accept(conn: &mut BufReader<TcpStream>, opts: &NetOptions) -> Result<Session, HandshakeError> {
    match &opts.credentials {
        None => accept_null(conn).await,
        Some(creds) => accept_curve(conn, creds).await,
    }
}

/// Greeting both ways, then READY both ways.
async fn accept_null(conn: &mut BufReader<TcpStream>) -> Result<Session, HandshakeError> {
    let mut ours = zmtp::greeting().to_vec();
    ours.extend_from_slice(&zmtp::ready("PULL"));
    greet(conn, &ours, Mechanism::Null).await?;
    let mut cmd = Vec::new();
    zmtp::read_command(conn, &mut cmd).await?;
    let metadata = cmd.strip_prefix(b"\x05READY").ok_or_else(|| unexpected(&cmd, "READY"))?;
    check_socket_type(metadata, "PUSH")?;
    Ok(Session { cipher: None, identity: None })
}

/// The CURVE server; a peer it refuses is told so with an ERROR (what libzmq sends when
/// its authenticator says no: status 400), then closed.
async fn accept_curve(conn: &mut BufReader<TcpStream>, creds: &Credentials) -> Result<Session, HandshakeError> {
    let result = curve_server(conn, creds).await;
    if let Err(HandshakeError::Refused(_)) = &result {
        let _ = conn.get_mut().write_all(&zmtp::command_frame(&curve::error_body("400"))).await;
    }
    result
}

/// HELLO, WELCOME, INITIATE (whose long-term key must be on the allow-list), READY.
async fn curve_server(conn: &mut BufReader<TcpStream>, creds: &Credentials) -> Result<Session, HandshakeError> {
    let mut server = curve::Server::new(&creds.curve)?;
    greet(conn, &zmtp::greeting_for(Mechanism::Curve, true), Mechanism::Curve).await?;
    let mut cmd = Vec::new();
    zmtp::read_command(conn, &mut cmd).await?;
    if zmtp::command_name(&cmd) != Some(b"HELLO") {
        return Err(unexpected(&cmd, "HELLO"));
    }
    server.hello(&cmd)?;
    conn.get_mut().write_all(&zmtp::command_frame(&server.welcome()?)).await?;
    zmtp::read_command(conn, &mut cmd).await?;
    if zmtp::command_name(&cmd) != Some(b"INITIATE") {
        return Err(unexpected(&cmd, "INITIATE"));
    }
    let init = server.initiate(&cmd)?;
    let Some(&identity) = creds.curve_allow.get(&init.client) else {
        let key = crate::auth::z85::encode(&init.client);
        return Err(HandshakeError::Refused(format!("CURVE key {key} is not on the allow-list")));
    };
    check_socket_type(&init.metadata, "PUSH")?;
    let mut cipher = init.cipher;
    conn.get_mut().write_all(&zmtp::command_frame(&cipher.ready(&zmtp::metadata("PULL"))?)).await?;
    Ok(Session { cipher: Some(cipher), identity: Some(identity) })
}

/// Reads one frame (its first byte already read as `flags`) into `part`. A message is
/// limited as a whole, however many parts it comes in (`already` bytes so far), and under
/// CURVE by what it carries; a NULL command by [`zmtp::MAX_COMMAND`].
async fn read_frame(
    conn: &mut BufReader<TcpStream>,
    flags: u8,
    sealed: bool,
    already: usize,
    opts: &NetOptions,
    part: &mut Vec<u8>,
) -> Result<(), Ended> {
    let len = zmtp::read_len(conn, flags).await.map_err(|_| Ended::Truncated)?;
    let (already, overhead, limit) = match (sealed, flags & zmtp::COMMAND != 0) {
        (true, _) => (already, curve::MESSAGE_OVERHEAD as u64, opts.max_frame),
        (false, true) => (0, 0, zmtp::MAX_COMMAND as usize),
        (false, false) => (already, 0, opts.max_frame),
    };
    let total = (already as u64).saturating_add(len.saturating_sub(overhead));
    wire::check_len(total, limit).map_err(Ended::Refused)?;
    link::read_body(conn, len as usize, part).await.map_err(|_| Ended::Truncated)
}

/// Reads messages until the peer closes or sends something bad. A multi-part message is
/// taken as the concatenation of its parts; a PING is answered with a PONG, and other
/// commands are skipped.
async fn read_messages(
    conn: &mut BufReader<TcpStream>,
    mut session: Session,
    opts: &NetOptions,
    stats: &Counters,
    inbox: &mpsc::Sender<Envelope>,
    last: &mut link::LastFrame,
) -> Ended {
    let peer = conn.get_ref().peer_addr().ok();
    let mut msg = Vec::new();
    let mut part = Vec::new();
    loop {
        let outer = match link::read_first_byte(conn, opts.idle_timeout).await {
            Ok(Some(f)) => f,
            Err(e) if e.kind() == io::ErrorKind::TimedOut => return Ended::Quiet,
            _ => return Ended::Closed { cut: false },
        };
        let sealed = session.cipher.is_some();
        match timeout(opts.frame_timeout, read_frame(conn, outer, sealed, msg.len(), opts, &mut part)).await {
            Ok(Ok(())) => {}
            // Cut short by the peer's end (not a stall: that is the timeout below).
            Ok(Err(Ended::Truncated)) => return Ended::Closed { cut: true },
            Ok(Err(ended)) => return ended,
            Err(_) => return Ended::Truncated,
        }
        // Under CURVE the flags that count are the sealed ones.
        let (flags, data) = match session.cipher.as_mut() {
            None => (outer, 0..part.len()),
            Some(cipher) => match cipher.open_in_place(&mut part) {
                Ok(opened) => opened,
                Err(_) => return Ended::Unsealed,
            },
        };
        if flags & zmtp::COMMAND != 0 {
            // A peer with heartbeats on drops a connection that stays silent past its
            // timeout; a PULL side has nothing else to say, so it answers every PING.
            let Some(pong) = zmtp::pong_body(&part[data]) else { continue };
            let mut frame = Vec::new();
            match session.cipher.as_mut() {
                None => frame = zmtp::command_frame(&pong),
                Some(cipher) => {
                    if cipher.seal_frame(zmtp::COMMAND, &pong, &mut frame).is_err() {
                        return Ended::Quiet;
                    }
                }
            }
            match timeout(opts.frame_timeout, conn.get_mut().write_all(&frame)).await {
                Ok(Ok(())) => continue,
                _ => return Ended::Quiet,
            }
        }
        if flags & zmtp::MORE != 0 {
            msg.extend_from_slice(&part[data]);
            continue;
        }
        let body = if msg.is_empty() {
            &part[data]
        } else {
            msg.extend_from_slice(&part[data]);
            &msg
        };
        // Counted by `deliver_as`; the connection closes on a bad frame or a sender the
        // peer's identity does not permit.
        if link::deliver_as(body, peer, session.identity, stats, inbox, last).await.is_err() {
            return Ended::Quiet;
        }
        msg.clear();
        if part.capacity() > 1 << 20 {
            part = Vec::new();
        }
    }
}

//! The inbound side shared by the network transports: the accept loop, frame reading
//! under deadlines, and delivery of decoded envelopes to `recv`.

use super::{bump, spawn_scoped, Counters, NetOptions, Refusal, Shutdown};
use crate::auth::Identity;
use crate::envelope::Envelope;
use crate::wire::{self, WireError};
use ballot_core::{Message, NodeId};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::{timeout, Instant};

/// Hands a received body to `recv`, counting it, for a connection whose peer proved
/// `identity` (`None`: an insecure one). An error means the connection should close: the
/// frame was bad, the transport is gone, or the envelope's `from` is not one the identity
/// permits (dropped and counted as `dropped_identity`: its peer holds a key of the cluster
/// and sends in another's name).
pub(crate) async fn deliver_as(
    body: &[u8],
    peer: Option<SocketAddr>,
    identity: Option<Identity>,
    stats: &Counters,
    inbox: &mpsc::Sender<Envelope>,
    last: &mut LastFrame,
) -> Result<(), Option<WireError>> {
    match wire::decode_body(body) {
        Ok(env) => {
            if let Some(who) = identity.filter(|who| !who.permits(env.from)) {
                let why = format!("{who} sent a frame as {}; its connection is closed", env.from);
                stats.refuse(Refusal::IdentityMismatch, peer, &why);
                return Err(None);
            }
            bump(&stats.frames_received, 1);
            bump(&stats.bytes_received, body.len() as u64);
            *last = LastFrame(Some((env.from, env.to, Instant::now())));
            inbox.send(env).await.map_err(|_| None)
        }
        Err(e) => {
            stats.refused(&e, peer);
            Err(Some(e))
        }
    }
}

/// A connection's last delivered frame: who sent it, to whom, and when. When the
/// connection closes (end of stream or reset, not an idle timeout or a refusal) within
/// [`in_use`] of that frame, the sender most likely crashed: a live peer lets an idle
/// connection go only after half the idle timeout without a write, and otherwise keeps
/// it. `recv` then yields [`Message::PeerDown`] in the sender's name, so the roles need
/// not wait out a timeout to notice (ARCHITECTURE.md, "Crash notices").
#[derive(Debug, Default)]
pub(crate) struct LastFrame(Option<(NodeId, NodeId, Instant)>);

/// How recent a connection's last frame (or write) must be for its close to count as a
/// crash: a second, or a quarter of the idle timeout if that is shorter, since a live
/// sender lets a connection go after half the idle timeout without a write.
pub(crate) fn in_use(opts: &NetOptions) -> Duration {
    let second = Duration::from_secs(1);
    opts.idle_timeout.map_or(second, |idle| (idle / 4).min(second))
}

/// Hands `recv` the notice that `from`'s connection closed while in use, and counts it.
/// Never waits: a full inbox loses the notice, which is only a hint.
pub(crate) fn notice_down(from: NodeId, to: NodeId, stats: &Counters, inbox: &mpsc::Sender<Envelope>) {
    if inbox.try_send(Envelope::new(from, to, Message::PeerDown)).is_ok() {
        bump(&stats.peer_down_notices, 1);
    }
}

impl LastFrame {
    /// The connection closed under its reader: tell `recv`, if it was in use.
    pub(crate) fn closed(&self, opts: &NetOptions, stats: &Counters, inbox: &mpsc::Sender<Envelope>) {
        if let Some((from, to, _)) = self.0.filter(|&(_, _, at)| at.elapsed() < in_use(opts)) {
            notice_down(from, to, stats, inbox);
        }
    }
}

/// Runs `serve` for each accepted connection until the transport is dropped; the
/// listener is dropped with the task. At most `max` connections are served at once: one
/// more is closed as soon as it is accepted, counted, and logged (one line a second at
/// most, saying how many were closed since): without the cap, every idle connection
/// held a task and its buffers.
pub(crate) async fn accept_loop<F, Fut>(
    listener: tokio::net::TcpListener,
    stats: Arc<Counters>,
    rt: tokio::runtime::Handle,
    shutdown: Shutdown,
    max: usize,
    serve: F,
) where
    F: Fn(tokio::net::TcpStream) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let slots = Arc::new(tokio::sync::Semaphore::new(max.max(1)));
    loop {
        match listener.accept().await {
            Ok((stream, from)) => {
                let Ok(slot) = slots.clone().try_acquire_owned() else {
                    drop(stream);
                    let at = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
                    let why = format!("{at}: {max} connections are open, the limit; closed a new one");
                    stats.refuse(Refusal::ConnectionCap, Some(from), &why);
                    continue;
                };
                let _ = stream.set_nodelay(true);
                bump(&stats.connections_opened, 1);
                let stats = stats.clone();
                let fut = serve(stream);
                spawn_scoped(&rt, &shutdown, async move {
                    fut.await;
                    bump(&stats.connections_closed, 1);
                    drop(slot);
                });
            }
            // Out of file descriptors and the like: wait a little instead of spinning.
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

/// Reads exactly `len` bytes into `buf` (cleared first), growing it as bytes arrive so
/// that a large announced length costs nothing until the bytes are really sent.
pub(crate) async fn read_body<R: tokio::io::AsyncRead + Unpin>(
    r: &mut R,
    len: usize,
    buf: &mut Vec<u8>,
) -> io::Result<()> {
    use tokio::io::AsyncReadExt;
    buf.clear();
    let got = r.take(len as u64).read_to_end(buf).await?;
    if got < len {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(())
}

/// Waits for the first byte of the next frame, under the idle timeout if there is one.
/// `Ok(None)` is a clean close.
pub(crate) async fn read_first_byte<R: tokio::io::AsyncRead + Unpin>(
    r: &mut R,
    idle: Option<Duration>,
) -> io::Result<Option<u8>> {
    use tokio::io::AsyncReadExt;
    let mut b = [0u8; 1];
    let n = match idle {
        Some(t) => timeout(t, r.read(&mut b)).await.map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??,
        None => r.read(&mut b).await?,
    };
    Ok((n == 1).then_some(b[0]))
}

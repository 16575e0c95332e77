//! The control channel of a node process: how `chaos` (and operators' tools) ask a node
//! for its status and applied log, and tell its transport which faults to simulate.
//!
//! One TCP listener per node; each connection carries request/reply frames:
//! `[u32 big-endian length][rmp-serde body]`, at most [`MAX_CONTROL_FRAME`] bytes. Every
//! read (once a frame has begun) and write has a deadline; a bad frame closes that connection only.
//!
//! Faults set here are applied inside the node's transport (a wrapper that drops, delays,
//! duplicates or blocks messages per peer). They are not a kernel-level partition: a
//! node's sockets stay connected, its messages are discarded on the way out and on the
//! way in.

use ballot_core::{Ballot, NodeId, Status, Value};
use ballot_runtime::NodeControl;
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// Largest control frame: a log page of big batches fits.
pub const MAX_CONTROL_FRAME: usize = 64 << 20;
/// Deadline of one read or write on the control channel.
pub const CONTROL_DEADLINE: Duration = Duration::from_secs(5);

/// What a control client asks.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ControlRequest {
    /// The node's status.
    Status,
    /// Applied values after `after`, at most `max` (learners).
    Applied {
        /// The last slot the client has.
        after: u64,
        /// Values at most.
        max: u32,
    },
    /// Simulate a fault (or heal).
    Faults(FaultCommand),
    /// Answered `Ok`: the channel works.
    Ping,
    /// The ballot of the value accepted at `slot` (acceptors).
    AcceptedAt {
        /// The log slot.
        slot: u64,
    },
}

/// Faults to simulate in the node's transport. They concern only the links of this node.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum FaultCommand {
    /// Block every link between the two sides, both ways.
    Partition {
        /// One side.
        a: Vec<NodeId>,
        /// The other side.
        b: Vec<NodeId>,
    },
    /// Block every message from a node of `from` to a node of `to`; the other way works.
    PartitionOneway {
        /// The senders whose messages are blocked.
        from: Vec<NodeId>,
        /// The receivers they are blocked towards.
        to: Vec<NodeId>,
    },
    /// Block every link of this node, both ways.
    Isolate(NodeId),
    /// Remove every fault.
    Heal,
    /// Drop each message with this probability (0.0 to 1.0).
    DropRate(f64),
    /// Duplicate each message with this probability (0.0 to 1.0).
    DuplicateRate(f64),
    /// Delay each message by a random time in the range.
    Delay {
        /// Shortest delay, in milliseconds.
        min_ms: u64,
        /// Longest delay, in milliseconds (at least `min_ms`).
        max_ms: u64,
    },
}

impl FaultCommand {
    /// The one check of a fault command, wherever it comes from (a scenario, a control
    /// client): every rate is a probability from 0.0 to 1.0 (NaN is not), and no delay's
    /// min exceeds its max. The error says what is wrong, in one line.
    pub fn validate(&self) -> Result<(), String> {
        let probability = |what: &str, p: f64| {
            if (0.0..=1.0).contains(&p) {
                Ok(())
            } else {
                Err(format!("{what} takes a probability from 0.0 to 1.0, not {p}"))
            }
        };
        match self {
            FaultCommand::DropRate(p) => probability("drop_rate", *p),
            FaultCommand::DuplicateRate(p) => probability("duplicate_rate", *p),
            FaultCommand::Delay { min_ms, max_ms } if min_ms > max_ms => {
                Err(format!("delay({min_ms}, {max_ms}): min must not exceed max"))
            }
            // Cutting links and healing have nothing to check: any set of nodes is a cut.
            FaultCommand::Delay { .. }
            | FaultCommand::Partition { .. }
            | FaultCommand::PartitionOneway { .. }
            | FaultCommand::Isolate(_)
            | FaultCommand::Heal => Ok(()),
        }
    }
}

/// What the node answers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ControlReply {
    /// The node's status.
    Status(Status),
    /// Applied values by slot.
    Applied(Vec<(u64, Value)>),
    /// The ballot of the value accepted at the slot, if any.
    AcceptedAt(Option<Ballot>),
    /// Done.
    Ok,
    /// Not done: one line saying why.
    Error(String),
}

/// Whatever applies fault commands to a node's transport.
pub trait FaultSink: Send + Sync + 'static {
    /// Applies `cmd` at once. It has passed [`FaultCommand::validate`]: a sink applies it
    /// as it is, with no clamping of its own.
    fn apply(&self, cmd: &FaultCommand);
}

/// Why a control exchange failed; each message is one line naming the address.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The connection failed.
    #[error("control connection to {addr} failed: {source}")]
    Io {
        /// The other end.
        addr: SocketAddr,
        /// What failed.
        source: std::io::Error,
    },
    /// No answer within the deadline.
    #[error("control channel of {addr} did not answer within {0:?}", CONTROL_DEADLINE)]
    Timeout {
        /// The other end.
        addr: SocketAddr,
    },
    /// A frame over [`MAX_CONTROL_FRAME`].
    #[error("control frame of {len} bytes is over the {max} byte limit")]
    Oversized {
        /// Its announced length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A frame that is not a request or reply.
    #[error("control frame does not decode: {0}")]
    Decode(String),
}

async fn write_frame<T: Serialize>(s: &mut TcpStream, v: &T) -> std::io::Result<()> {
    let body = rmp_serde::to_vec(v).map_err(|e| std::io::Error::other(e.to_string()))?;
    if body.len() > MAX_CONTROL_FRAME {
        return Err(std::io::Error::other(format!("control frame of {} bytes is too large", body.len())));
    }
    let mut buf = Vec::with_capacity(4 + body.len());
    buf.extend_from_slice(&(body.len() as u32).to_be_bytes());
    buf.extend_from_slice(&body);
    s.write_all(&buf).await
}

/// Read one frame; `Ok(None)` at a clean end of stream.
async fn read_frame<T: DeserializeOwned>(s: &mut TcpStream) -> Result<Option<T>, ControlError> {
    let addr = s.peer_addr().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    let io = |source| ControlError::Io { addr, source };
    let mut len = [0u8; 4];
    match s.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(io(e)),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_CONTROL_FRAME {
        return Err(ControlError::Oversized { len, max: MAX_CONTROL_FRAME });
    }
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).await.map_err(io)?;
    rmp_serde::from_slice(&body).map(Some).map_err(|e| ControlError::Decode(e.to_string()))
}

/// Serve control requests for the node behind `ctrl` until `shutdown` completes; then
/// stop accepting, let each connection finish the request it is reading or answering
/// (idle ones close at once) within [`crate::DRAIN_DEADLINE`], and return.
pub async fn serve(
    listener: TcpListener,
    ctrl: NodeControl,
    faults: Option<Arc<dyn FaultSink>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let (stop, stopping) = watch::channel(false);
    let mut conns = JoinSet::new();
    crate::server::accept_until(listener, shutdown, "control", &mut conns, |stream| {
        let (ctrl, faults, stopping) = (ctrl.clone(), faults.clone(), stopping.clone());
        Some(async move {
            let _ = connection(stream, ctrl, faults, stopping).await;
        })
    })
    .await;
    let told = async {
        let _ = stop.send(true);
    };
    crate::server::drain(&mut conns, told, crate::DRAIN_DEADLINE, "control").await;
}

async fn connection(
    mut s: TcpStream,
    ctrl: NodeControl,
    faults: Option<Arc<dyn FaultSink>>,
    mut stopping: watch::Receiver<bool>,
) -> Result<(), ControlError> {
    let addr =
        s.peer_addr().map_err(|source| ControlError::Io { addr: SocketAddr::from(([0, 0, 0, 0], 0)), source })?;
    let _ = s.set_nodelay(true);
    loop {
        // An idle connection is fine; it just holds a task, until shutdown closes it. Once a
        // request's first byte is here, the request is read and answered even during
        // shutdown, within the deadlines.
        let mut first = [0u8; 1];
        tokio::select! {
            biased;
            seen = s.peek(&mut first) => match seen {
                Ok(0) => return Ok(()),
                Ok(_) => {}
                Err(source) => return Err(ControlError::Io { addr, source }),
            },
            _ = stopping.wait_for(|stop| *stop) => return Ok(()),
        }
        let req = tokio::time::timeout(CONTROL_DEADLINE, read_frame::<ControlRequest>(&mut s))
            .await
            .map_err(|_| ControlError::Timeout { addr })?;
        let Some(req) = req? else { return Ok(()) };
        let reply = answer(req, &ctrl, faults.as_deref()).await;
        tokio::time::timeout(CONTROL_DEADLINE, write_frame(&mut s, &reply))
            .await
            .map_err(|_| ControlError::Timeout { addr })?
            .map_err(|source| ControlError::Io { addr, source })?;
    }
}

async fn answer(req: ControlRequest, ctrl: &NodeControl, faults: Option<&dyn FaultSink>) -> ControlReply {
    match req {
        ControlRequest::Ping => ControlReply::Ok,
        ControlRequest::Status => match ctrl.status(CONTROL_DEADLINE).await {
            Some(s) => ControlReply::Status(s),
            _ => ControlReply::Error("the node did not report its status".into()),
        },
        ControlRequest::Applied { after, max } => match ctrl.applied(after, max as usize, CONTROL_DEADLINE).await {
            Some(v) => ControlReply::Applied(v),
            _ => ControlReply::Error("the node did not report its log".into()),
        },
        ControlRequest::AcceptedAt { slot } => match ctrl.accepted_at(slot, CONTROL_DEADLINE).await {
            Some(b) => ControlReply::AcceptedAt(b),
            _ => ControlReply::Error("the node did not report its accepted ballot".into()),
        },
        ControlRequest::Faults(cmd) => match faults {
            Some(f) => match cmd.validate() {
                Ok(()) => {
                    f.apply(&cmd);
                    ControlReply::Ok
                }
                Err(e) => ControlReply::Error(format!("fault refused: {e}")),
            },
            None => ControlReply::Error("this node's transport does not simulate faults".into()),
        },
    }
}

/// A connection to one node's control channel.
pub struct ControlClient {
    addr: SocketAddr,
    stream: TcpStream,
}

impl ControlClient {
    /// Connects within [`CONTROL_DEADLINE`].
    pub async fn connect(addr: SocketAddr) -> Result<Self, ControlError> {
        let stream = tokio::time::timeout(CONTROL_DEADLINE, TcpStream::connect(addr))
            .await
            .map_err(|_| ControlError::Timeout { addr })?
            .map_err(|source| ControlError::Io { addr, source })?;
        let _ = stream.set_nodelay(true);
        Ok(ControlClient { addr, stream })
    }

    /// One request and its reply, within `deadline`.
    pub async fn request(&mut self, req: &ControlRequest, deadline: Duration) -> Result<ControlReply, ControlError> {
        let addr = self.addr;
        let exchange = async {
            write_frame(&mut self.stream, req).await.map_err(|source| ControlError::Io { addr, source })?;
            read_frame::<ControlReply>(&mut self.stream).await?.ok_or(ControlError::Io {
                addr,
                source: std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "control connection closed"),
            })
        };
        tokio::time::timeout(deadline, exchange).await.map_err(|_| ControlError::Timeout { addr })?
    }
}

/// Applies fault commands to a [`ballot_transports::FaultHandle`], remembering the
/// current default link faults so drop, delay and duplication combine.
pub struct TransportFaults {
    handle: ballot_transports::FaultHandle,
    current: std::sync::Mutex<ballot_transports::LinkFaults>,
}

impl TransportFaults {
    /// Faults applied to `handle`, none at first.
    pub fn new(handle: ballot_transports::FaultHandle) -> Self {
        TransportFaults { handle, current: std::sync::Mutex::new(Default::default()) }
    }
}

impl FaultSink for TransportFaults {
    fn apply(&self, cmd: &FaultCommand) {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        match cmd {
            FaultCommand::Partition { a, b } => self.handle.partition(a, b),
            FaultCommand::PartitionOneway { from, to } => self.handle.partition_one_way(from, to),
            FaultCommand::Isolate(n) => self.handle.isolate(*n),
            FaultCommand::Heal => {
                *current = Default::default();
                self.handle.heal();
            }
            FaultCommand::DropRate(p) => {
                current.drop = *p;
                self.handle.set_default_faults(current.clone());
            }
            FaultCommand::DuplicateRate(p) => {
                current.duplicate = *p;
                self.handle.set_default_faults(current.clone());
            }
            FaultCommand::Delay { min_ms, max_ms } => {
                let (min, max) = (Duration::from_millis(*min_ms), Duration::from_millis(*max_ms));
                current.delay = Some((min, max));
                self.handle.set_default_faults(current.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ballot_core::{Config, Learner, MemStorage};
    use ballot_transports::{EventLog, MemNetwork};
    use std::sync::Mutex;

    /// A real learner on an in-memory network of its own, behind the control channel.
    fn learner() -> ballot_runtime::NodeHandle {
        let id = NodeId::learner(1);
        let net = MemNetwork::new(1, EventLog::new(false));
        let config = Arc::new(Config::new(1, 1, 1, vec!["a".into()]));
        ballot_runtime::spawn_node(
            Learner::new(id, config, Default::default()),
            net.register(id),
            MemStorage::new(),
            ballot_runtime::NodeOptions::seeded(1),
        )
    }

    struct Recorded(Mutex<Vec<FaultCommand>>);
    impl FaultSink for Recorded {
        fn apply(&self, cmd: &FaultCommand) {
            self.0.lock().unwrap().push(cmd.clone());
        }
    }

    #[tokio::test]
    async fn status_applied_and_faults_round_trip() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let node = learner();
        let sink = Arc::new(Recorded(Mutex::new(Vec::new())));
        tokio::spawn(serve(
            listener,
            node.controller(),
            Some(sink.clone() as Arc<dyn FaultSink>),
            std::future::pending(),
        ));
        let mut c = ControlClient::connect(addr).await.unwrap();
        let d = Duration::from_secs(10);
        assert_eq!(c.request(&ControlRequest::Ping, d).await.unwrap(), ControlReply::Ok);
        match c.request(&ControlRequest::Status, d).await.unwrap() {
            ControlReply::Status(s) => assert_eq!((s.id, s.applied), (Some(NodeId::learner(1)), Some(0))),
            other => panic!("{other:?}"),
        }
        match c.request(&ControlRequest::Applied { after: 4, max: 10 }, d).await.unwrap() {
            ControlReply::Applied(v) => assert!(v.is_empty(), "a new learner has applied nothing: {v:?}"),
            other => panic!("{other:?}"),
        }
        let cmd = FaultCommand::Isolate(NodeId::acceptor(2));
        assert_eq!(c.request(&ControlRequest::Faults(cmd.clone()), d).await.unwrap(), ControlReply::Ok);
        // A control client is untrusted: a command out of range is refused, never applied.
        for bad in [
            FaultCommand::DropRate(1.5),
            FaultCommand::DuplicateRate(f64::NAN),
            FaultCommand::Delay { min_ms: 9, max_ms: 1 },
        ] {
            match c.request(&ControlRequest::Faults(bad.clone()), d).await.unwrap() {
                ControlReply::Error(e) => assert!(e.starts_with("fault refused: "), "{e}"),
                other => panic!("{bad:?} was answered {other:?}"),
            }
        }
        assert_eq!(*sink.0.lock().unwrap(), vec![cmd], "only the valid command reached the sink");
    }

    #[tokio::test]
    async fn garbage_on_the_control_port_closes_only_that_connection() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let node = learner();
        tokio::spawn(serve(listener, node.controller(), None, std::future::pending()));
        let mut raw = TcpStream::connect(addr).await.unwrap();
        raw.write_all(&[0xff, 0xff, 0xff, 0xff, 1, 2, 3]).await.unwrap();
        let mut buf = [0u8; 8];
        let n = tokio::time::timeout(Duration::from_secs(10), raw.read(&mut buf)).await.unwrap().unwrap_or(0);
        assert_eq!(n, 0, "the server closes a connection that sent an oversized frame");
        let mut c = ControlClient::connect(addr).await.unwrap();
        assert_eq!(c.request(&ControlRequest::Ping, Duration::from_secs(10)).await.unwrap(), ControlReply::Ok);
    }
}

//! The control server: [`serve`], each connection's authentication and its requests.

use super::frame::{read_frame, write_frame};
use super::{
    ControlError, ControlOptions, ControlReply, ControlRequest, FaultSink, CONTROL_DEADLINE, CONTROL_IDENTITY,
    MAX_AUTH_FRAME, MAX_CONTROL_FRAME,
};
use crate::access::Refusal;
use ballot_runtime::NodeControl;
use ballot_transports::auth::Identity;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tokio::time::{timeout, timeout_at, Instant};

/// How long a refusal's one line may take to write before the connection is dropped.
const REFUSAL_WRITE_DEADLINE: Duration = Duration::from_secs(1);

/// What every connection of one server shares.
struct Served {
    ctrl: NodeControl,
    faults: Option<Arc<dyn FaultSink>>,
    opts: ControlOptions,
}

/// Serve control requests for the node behind `ctrl` until `shutdown` completes; then
/// stop accepting, let each connection finish the request it is reading or answering
/// (idle ones close at once) within [`crate::DRAIN_DEADLINE`], and return. `opts` says
/// who may connect and the limits (see the [module docs](super)).
pub async fn serve(
    listener: TcpListener,
    ctrl: NodeControl,
    faults: Option<Arc<dyn FaultSink>>,
    opts: ControlOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    if opts.access.is_open() {
        let at = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
        tracing::warn!("control channel on {at} is open: anyone who connects can read the log and inject faults (give the node credentials)");
    }
    let (stop, stopping) = watch::channel(false);
    let permits = Arc::new(Semaphore::new(opts.max_connections.max(1)));
    let served = Arc::new(Served { ctrl, faults, opts });
    let mut conns = JoinSet::new();
    crate::server::accept_until(listener, shutdown, "control", &mut conns, |stream| {
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            let max = served.opts.max_connections;
            let from = stream.peer_addr().map(|a| a.to_string()).unwrap_or_default();
            let line = format!("{from}: {max} connections are open, the limit; closed at once");
            served.opts.refusals.refuse("control", Refusal::TooManyConnections, line);
            return None;
        };
        let (served, stopping) = (served.clone(), stopping.clone());
        Some(async move {
            connection(stream, &served, stopping).await;
            drop(permit);
        })
    })
    .await;
    let told = async {
        let _ = stop.send(true);
    };
    crate::server::drain(&mut conns, told, crate::DRAIN_DEADLINE, "control").await;
}

/// What waiting for the next request gave.
enum Next {
    Request(ControlRequest),
    /// The caller closed, the connection broke, it stayed idle too long or we are
    /// stopping: close without a word.
    Closed,
    /// Refuse with this line and close.
    Refused(Refusal, String),
}

async fn connection(mut s: TcpStream, served: &Served, mut stopping: watch::Receiver<bool>) {
    let Ok(addr) = s.peer_addr() else { return };
    let _ = s.set_nodelay(true);
    let opts = &served.opts;
    // The first frame (with tokens: the credential) must arrive whole within the frame
    // deadline of connecting: a caller that says nothing holds a slot that long at most.
    let first_max = if opts.access.is_open() { opts.max_request } else { MAX_AUTH_FRAME };
    let mut next = next_request(&mut s, Instant::now() + opts.frame_deadline, None, first_max, &mut stopping).await;
    let mut first = true;
    loop {
        let req = match next {
            Next::Request(req) => req,
            Next::Closed => return,
            Next::Refused(why, line) => return refuse(&mut s, addr, served, why, line).await,
        };
        // With tokens the first frame is the credential, and a later `Auth` is checked
        // again (a caller that sends a wrong one is refused like a first one).
        let checks = !opts.access.is_open();
        let reply = if checks && (first || matches!(req, ControlRequest::Auth { .. })) {
            match authenticate(served, &req) {
                Ok(()) => ControlReply::Ok,
                Err((why, line)) => return refuse(&mut s, addr, served, why, line).await,
            }
        } else {
            answer(req, &served.ctrl, served.faults.as_deref()).await
        };
        first = false;
        match timeout(CONTROL_DEADLINE, write_frame(&mut s, &reply, MAX_CONTROL_FRAME)).await {
            Ok(Ok(())) => {}
            _ => return,
        }
        // Between requests a connection may be silent for the idle timeout; once a frame
        // has begun, it must be whole within the frame deadline, even during shutdown.
        let idle_until = Instant::now() + opts.idle_timeout;
        next = next_request(&mut s, idle_until, Some(opts.frame_deadline), opts.max_request, &mut stopping).await;
    }
}

/// Waits until `begin_by` for a frame to begin (or for shutdown), then reads it whole:
/// by `begin_by` too when `whole_within` is `None` (the first frame), else within
/// `whole_within` of its first byte.
async fn next_request(
    s: &mut TcpStream,
    begin_by: Instant,
    whole_within: Option<Duration>,
    max: usize,
    stopping: &mut watch::Receiver<bool>,
) -> Next {
    let mut byte = [0u8; 1];
    let began = tokio::select! {
        biased;
        seen = timeout_at(begin_by, s.peek(&mut byte)) => seen,
        _ = stopping.wait_for(|stop| *stop) => return Next::Closed,
    };
    match began {
        Ok(Ok(n)) if n > 0 => {}
        Ok(_) => return Next::Closed,
        Err(_) if whole_within.is_none() => {
            return Next::Refused(Refusal::Timeout, "no request within the deadline after connecting".into())
        }
        // Idle past the idle timeout: an operator's tool that went quiet, not an attack.
        Err(_) => return Next::Closed,
    }
    let whole_by = whole_within.map_or(begin_by, |d| Instant::now() + d);
    match timeout_at(whole_by, read_frame::<ControlRequest>(s, max)).await {
        Ok(Ok(Some(req))) => Next::Request(req),
        Ok(Ok(None)) => Next::Closed,
        Ok(Err(ControlError::Oversized { len, max })) => {
            Next::Refused(Refusal::Oversized, format!("a frame of {len} bytes, over the {max} byte limit"))
        }
        Ok(Err(ControlError::Decode(e))) => {
            Next::Refused(Refusal::Garbage, format!("a frame that does not decode: {e}"))
        }
        Ok(Err(_)) => Next::Closed,
        Err(_) => Next::Refused(Refusal::Timeout, "a frame begun and not finished within the deadline".into()),
    }
}

/// With tokens: the request must be an `Auth` naming the operator, with its token.
fn authenticate(served: &Served, req: &ControlRequest) -> Result<(), (Refusal, String)> {
    let ControlRequest::Auth { identity, token } = req else {
        let line = format!("the first frame must be Auth naming {CONTROL_IDENTITY} with its token");
        return Err((Refusal::NoCredential, line));
    };
    let shown = || format!("{:?}", identity.chars().take(40).collect::<String>());
    let who: Identity =
        identity.parse().map_err(|_| (Refusal::WrongIdentity, format!("{} is not an identity", shown())))?;
    if who != Identity::Operator {
        return Err((
            Refusal::WrongIdentity,
            format!("{who} may not use the control channel, only {CONTROL_IDENTITY}"),
        ));
    }
    served.opts.access.check(who, Some(&token.0)).map_err(|why| (why, format!("the token is not {who}'s")))
}

/// Counts and logs the refusal, tells the caller in one line (best effort) and returns,
/// which closes the connection.
async fn refuse(s: &mut TcpStream, addr: SocketAddr, served: &Served, why: Refusal, line: String) {
    served.opts.refusals.refuse("control", why, format!("{addr}: {line}"));
    let reply = ControlReply::Error(format!("refused: {line}"));
    let _ = timeout(REFUSAL_WRITE_DEADLINE, write_frame(s, &reply, MAX_CONTROL_FRAME)).await;
}

async fn answer(req: ControlRequest, ctrl: &NodeControl, faults: Option<&dyn FaultSink>) -> ControlReply {
    match req {
        // Only on an open channel (a checking one authenticates it above).
        ControlRequest::Ping | ControlRequest::Auth { .. } => ControlReply::Ok,
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
        ControlRequest::ClockRate { factor } => match ballot_runtime::check_clock_rate(factor) {
            Ok(()) => {
                ctrl.set_clock_rate(factor);
                ControlReply::Ok
            }
            Err(e) => ControlReply::Error(format!("fault refused: {e}")),
        },
        ControlRequest::TearNextWrite => {
            ctrl.tear_next_write();
            ControlReply::Ok
        }
    }
}

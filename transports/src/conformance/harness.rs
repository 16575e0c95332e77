//! The harnesses the suite ships with: [`MemHarness`] for the in-memory network, and
//! [`NetHarness`] for any socket transport that implements [`NetNode`] (TCP, ZeroMQ).

use super::{within, Harness};
use crate::envelope::Transport;
use crate::kind::SocketTransport;
use crate::link::{StatsHandle, WireStats};
use crate::mem::MemNetwork;
use crate::tcp::TcpTransport;
use crate::zmq::{zmtp, ZmqTransport};
use crate::{EventLog, NetOptions};
use async_trait::async_trait;
use ballot_core::NodeId;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

/// Harness for the in-memory network: no sockets, so raw-byte cases are skipped.
pub struct MemHarness {
    net: MemNetwork,
}

impl Default for MemHarness {
    fn default() -> Self {
        MemHarness { net: MemNetwork::new(1, EventLog::new(false)) }
    }
}

#[async_trait]
impl Harness for MemHarness {
    fn name(&self) -> &'static str {
        "mem"
    }
    async fn start(&mut self, ids: &[NodeId]) -> Vec<Box<dyn Transport>> {
        ids.iter().map(|&id| Box::new(self.net.register(id)) as Box<dyn Transport>).collect()
    }
    async fn restart(&mut self, id: NodeId) -> Box<dyn Transport> {
        self.net.unregister(id);
        Box::new(self.net.register(id))
    }
}

/// What [`NetHarness`] needs of a socket transport: [`SocketTransport`], plus the raw
/// framing the byte-level cases write.
#[async_trait]
pub trait NetNode: SocketTransport {
    /// The transport's short name (`tcp`, `zmq`).
    const NAME: &'static str = Self::KIND.name();
    /// Binds `id` at `listen`, knowing `peers`.
    async fn bind_node(
        id: NodeId,
        listen: SocketAddr,
        peers: BTreeMap<NodeId, SocketAddr>,
        opts: NetOptions,
    ) -> std::io::Result<Self> {
        let t = Self::listen(id, listen, opts).await?;
        for (peer, addr) in peers {
            t.set_peer(peer, addr.into());
        }
        Ok(t)
    }
    /// The address it listens on.
    fn addr(&self) -> SocketAddr {
        self.local_addr()
    }
    /// Adds a peer or changes its address.
    fn add_peer(&self, id: NodeId, addr: SocketAddr) {
        self.set_peer(id, addr.into())
    }
    /// Its counters, readable after it is dropped.
    fn counters(&self) -> StatsHandle {
        self.stats_handle()
    }
    /// What a raw client sends before its first frame (a handshake; none for TCP).
    fn preamble() -> Vec<u8> {
        Vec::new()
    }
    /// The framing that announces a body of `len` bytes (TCP: a 4-byte big-endian length).
    fn frame_header(len: u64) -> Vec<u8> {
        (len.min(u32::MAX as u64) as u32).to_be_bytes().to_vec()
    }
}

impl NetNode for TcpTransport {}

#[async_trait]
impl NetNode for ZmqTransport {
    fn preamble() -> Vec<u8> {
        let mut p = zmtp::greeting().to_vec();
        p.extend(zmtp::ready("PUSH"));
        p
    }
    fn frame_header(len: u64) -> Vec<u8> {
        zmtp::message_header(len)
    }
}

/// Harness for a socket transport on 127.0.0.1, port 0.
pub struct NetHarness<T> {
    opts: NetOptions,
    addrs: BTreeMap<NodeId, SocketAddr>,
    stats: BTreeMap<NodeId, StatsHandle>,
    _kind: std::marker::PhantomData<fn() -> T>,
}

impl<T> NetHarness<T> {
    /// A harness whose nodes all use `opts`.
    pub fn new(opts: NetOptions) -> Self {
        NetHarness { opts, addrs: BTreeMap::new(), stats: BTreeMap::new(), _kind: std::marker::PhantomData }
    }
}

impl<T> Default for NetHarness<T> {
    fn default() -> Self {
        Self::new(NetOptions::default())
    }
}

/// [`NetHarness`] for [`TcpTransport`].
pub type TcpHarness = NetHarness<TcpTransport>;
/// [`NetHarness`] for [`ZmqTransport`].
pub type ZmqHarness = NetHarness<ZmqTransport>;

#[async_trait]
impl<T: NetNode> Harness for NetHarness<T> {
    fn name(&self) -> &'static str {
        T::NAME
    }

    async fn start(&mut self, ids: &[NodeId]) -> Vec<Box<dyn Transport>> {
        let mut nodes = Vec::new();
        for &id in ids {
            let listen: SocketAddr = "127.0.0.1:0".parse().expect("address");
            let t = T::bind_node(id, listen, self.addrs.clone(), self.opts.clone()).await.expect("bind");
            self.addrs.insert(id, t.addr());
            self.stats.insert(id, t.counters());
            nodes.push(t);
        }
        for t in &nodes {
            for &id in ids {
                t.add_peer(id, self.addrs[&id]);
            }
        }
        nodes.into_iter().map(|t| Box::new(t) as Box<dyn Transport>).collect()
    }

    async fn restart(&mut self, id: NodeId) -> Box<dyn Transport> {
        let addr = *self.addrs.get(&id).expect("restart of a node never started");
        // The old listener closes as its task ends; until then the port is busy.
        let t = within("rebind", async {
            loop {
                match T::bind_node(id, addr, self.addrs.clone(), self.opts.clone()).await {
                    Ok(t) => return t,
                    Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
                }
            }
        })
        .await;
        self.stats.insert(id, t.counters());
        Box::new(t)
    }

    fn raw_addr(&self, id: NodeId) -> Option<SocketAddr> {
        self.addrs.get(&id).copied()
    }

    fn stats(&self, id: NodeId) -> Option<WireStats> {
        self.stats.get(&id).map(|s| s.get())
    }

    fn raw_preamble(&self) -> Vec<u8> {
        T::preamble()
    }

    fn raw_frame_header(&self, len: u64) -> Vec<u8> {
        T::frame_header(len)
    }
}

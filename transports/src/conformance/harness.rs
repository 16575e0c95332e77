//! The harnesses the suite ships with: [`MemHarness`] for the in-memory network, and
//! [`NetHarness`] for any socket transport that implements [`NetNode`] (TCP, ZeroMQ),
//! insecure or, with [`NetHarness::secure`], each node with its own credentials.

use super::raw::{PlainDial, PlainFraming, RawDial, RawSession};
use super::{within, Harness};
use crate::auth::{generate, Credentials, Identity};
use crate::envelope::Transport;
use crate::kind::SocketTransport;
use crate::link::{StatsHandle, WireStats};
use crate::mem::MemNetwork;
use crate::tcp::TcpTransport;
use crate::zmq::{zmtp, CurveRawDial, ZmqTransport};
use crate::{EventLog, NetOptions};
use async_trait::async_trait;
use ballot_core::NodeId;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
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
    /// Raw sessions to node `id` at `addr`: with `client` (the harness runs with
    /// credentials) through the transport's secure handshake as that identity; without,
    /// [`plain_dial`] with [`Self::preamble`] and [`Self::frame_header`].
    fn raw_dial(addr: SocketAddr, _id: NodeId, _client: Option<&Credentials>) -> Arc<dyn RawDial> {
        plain_dial::<Self>(addr)
    }
}

/// Raw sessions with `T`'s fixed preamble and frame header.
pub fn plain_dial<T: NetNode>(addr: SocketAddr) -> Arc<dyn RawDial> {
    Arc::new(PlainDial { addr, preamble: T::preamble(), header: T::frame_header })
}

#[async_trait]
impl NetNode for TcpTransport {
    fn raw_dial(addr: SocketAddr, id: NodeId, client: Option<&Credentials>) -> Arc<dyn RawDial> {
        match client {
            Some(client) => Arc::new(TlsRawDial::new(addr, client, id)),
            None => plain_dial::<Self>(addr),
        }
    }
}

/// Raw sessions in mutual TLS as the holder of some credentials, to the node `target`:
/// the suite's hostile bodies then reach the frame reader behind a secure listener.
struct TlsRawDial {
    addr: SocketAddr,
    connector: tokio_rustls::TlsConnector,
    name: rustls::pki_types::ServerName<'static>,
}

impl TlsRawDial {
    fn new(addr: SocketAddr, client: &Credentials, target: NodeId) -> Self {
        let configs = crate::tls::TlsConfigs::new(client).expect("the suite's client credentials are usable");
        TlsRawDial { addr, connector: configs.client.into(), name: crate::tls::server_name(target) }
    }
}

#[async_trait]
impl RawDial for TlsRawDial {
    async fn session(&self) -> std::io::Result<RawSession> {
        let stream = tokio::net::TcpStream::connect(self.addr).await?;
        stream.set_nodelay(true)?;
        let tls = self.connector.connect(self.name.clone(), stream).await?;
        let header = <TcpTransport as NetNode>::frame_header;
        Ok(RawSession { io: Box::new(tls), framing: Box::new(PlainFraming(header)) })
    }
}

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
    fn raw_dial(addr: SocketAddr, id: NodeId, client: Option<&Credentials>) -> Arc<dyn RawDial> {
        match client {
            Some(client) => Arc::new(CurveRawDial::new(addr, client, id)),
            None => plain_dial::<Self>(addr),
        }
    }
}

/// A credentials folder for every node id the suite uses (proposers and acceptors 1 to
/// [`SUITE_IDS`], a client, an operator), removed on drop.
struct SuiteCredentials {
    dir: PathBuf,
    loaded: BTreeMap<Identity, Arc<Credentials>>,
    /// What raw clients prove.
    client: Arc<Credentials>,
}

/// Node numbers the suite's cases use (each case its own pair).
const SUITE_IDS: u16 = 16;

impl SuiteCredentials {
    fn new() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("ballot-conformance-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let nodes: Vec<NodeId> = (1..=SUITE_IDS).flat_map(|i| [NodeId::proposer(i), NodeId::acceptor(i)]).collect();
        generate(&dir, &nodes).expect("credentials for the suite");
        let client = Arc::new(Credentials::load(&dir, Identity::Client).expect("the client's credentials"));
        SuiteCredentials { dir, loaded: BTreeMap::new(), client }
    }

    fn of(&mut self, who: Identity) -> Arc<Credentials> {
        let dir = &self.dir;
        let load = || Arc::new(Credentials::load(dir, who).expect("a suite identity has credentials"));
        self.loaded.entry(who).or_insert_with(load).clone()
    }
}

impl Drop for SuiteCredentials {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Harness for a socket transport on 127.0.0.1, port 0.
pub struct NetHarness<T> {
    opts: NetOptions,
    creds: Option<SuiteCredentials>,
    addrs: BTreeMap<NodeId, SocketAddr>,
    stats: BTreeMap<NodeId, StatsHandle>,
    _kind: std::marker::PhantomData<fn() -> T>,
}

impl<T> NetHarness<T> {
    /// A harness whose nodes all use `opts`.
    pub fn new(opts: NetOptions) -> Self {
        NetHarness {
            opts,
            creds: None,
            addrs: BTreeMap::new(),
            stats: BTreeMap::new(),
            _kind: std::marker::PhantomData,
        }
    }

    /// A harness whose nodes use `opts` and each its own credentials (a fresh folder for
    /// the suite's ids): the transport's secure mode (CURVE on zmq). Raw clients prove
    /// the `client` identity.
    pub fn secure(opts: NetOptions) -> Self {
        NetHarness { creds: Some(SuiteCredentials::new()), ..Self::new(opts) }
    }

    fn opts_for(&mut self, id: NodeId) -> NetOptions {
        let credentials = self.creds.as_mut().map(|c| c.of(Identity::of(id)));
        NetOptions { credentials: credentials.or(self.opts.credentials.clone()), ..self.opts.clone() }
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
            let t = T::bind_node(id, listen, self.addrs.clone(), self.opts_for(id)).await.expect("bind");
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
        let opts = self.opts_for(id);
        // The old listener closes as its task ends; until then the port is busy.
        let t = within("rebind", async {
            loop {
                match T::bind_node(id, addr, self.addrs.clone(), opts.clone()).await {
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

    fn raw_dial(&self, id: NodeId) -> Option<Arc<dyn RawDial>> {
        let addr = *self.addrs.get(&id)?;
        Some(T::raw_dial(addr, id, self.creds.as_ref().map(|c| &*c.client)))
    }
}

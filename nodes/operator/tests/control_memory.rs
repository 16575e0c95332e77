//! The control channel never allocates a frame's announced length up front: a caller that
//! announces a large frame and sends little or nothing costs the server the bytes it sent.
//! (Allocating the announced length let 40 half-sent 64 MiB frames reserve 2.6 GB, all
//! still held 12 s later.) Checked with a counting allocator, not by RSS: this test binary
//! records the largest single allocation of the process while the attack runs.

use ballot_core::{Config, Learner, MemStorage, NodeId};
use ballot_operator::control::{self, ControlOptions};
use ballot_transports::{EventLog, MemNetwork};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The system allocator, remembering the largest allocation asked of it.
struct Counting;

static LARGEST: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded as it came.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded as it came.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST.fetch_max(new_size, Ordering::Relaxed);
        // SAFETY: forwarded as it came.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded as it came.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

#[tokio::test]
async fn an_announced_length_is_never_allocated_up_front() {
    // A generous request limit, so that the announced lengths pass the limit check and
    // reach the body read.
    const ANNOUNCED: usize = 48 << 20;
    let opts = ControlOptions {
        max_request: 64 << 20,
        frame_deadline: Duration::from_millis(300),
        ..ControlOptions::default()
    };
    let refusals = opts.refusals.clone();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let id = NodeId::learner(1);
    let net = MemNetwork::new(1, EventLog::new(false));
    let config = Arc::new(Config::new(1, 1, 1, vec!["a".into()]));
    let node = ballot_runtime::spawn_node(
        Learner::new(id, config, Default::default()),
        net.register(id),
        MemStorage::new(),
        ballot_runtime::NodeOptions::seeded(1),
    );
    tokio::spawn(control::serve(listener, node.controller(), None, opts, std::future::pending()));

    LARGEST.store(0, Ordering::Relaxed);
    let mut held = Vec::new();
    for sent in [0usize, 1000, 100_000] {
        let mut raw = TcpStream::connect(addr).await.unwrap();
        raw.write_all(&(ANNOUNCED as u32).to_be_bytes()).await.unwrap();
        raw.write_all(&vec![7u8; sent]).await.unwrap();
        held.push(raw);
    }
    for mut raw in held {
        let mut rest = Vec::new();
        tokio::time::timeout(Duration::from_secs(30), raw.read_to_end(&mut rest))
            .await
            .expect("the server never closed a half-sent frame")
            .unwrap_or(0);
    }
    let largest = LARGEST.load(Ordering::Relaxed);
    assert!(largest < ANNOUNCED / 16, "the server allocated {largest} bytes for frames announcing {ANNOUNCED}");
    assert_eq!(refusals.count("control", ballot_operator::access::Refusal::Timeout), 3);
}

//! What the ballot box's request ids cost in memory, per voter: counts the heap bytes
//! the allocator is asked for (a counting global allocator), for a `VotingState` after
//! `n` votes, and for its outcomes table alone (a map of the same type, with the same
//! keys). Run with `cargo run -p ballot-core --release --example request_id_memory`.
//!
//! The figures are requested bytes: the system allocator adds its own per-block overhead
//! (about 8 to 16 bytes per allocation with glibc), one block per request id string.

use ballot_core::voting::VotingState;
use ballot_core::{Command, NodeId, RequestId, VoteError, MAX_REQUEST_ID_BYTES};
use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded to the system allocator unchanged; only the sizes are
// added up.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size, Ordering::Relaxed);
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// A request id like the runtime client's: `client-N/` and 32 hex digits (45 bytes for a
/// five-digit client), or padded to `len` bytes.
fn request_id(i: u64, len: usize) -> String {
    let id = format!("client-12345/{:032x}", u128::from(i).wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835));
    format!("{id:0<len$}")
}

/// Live heap bytes that `build` leaves behind, per item.
fn bytes_per<T>(n: u64, build: impl FnOnce() -> T) -> (f64, T) {
    let before = LIVE.load(Ordering::Relaxed);
    let value = build();
    let after = LIVE.load(Ordering::Relaxed);
    ((after - before) as f64 / n as f64, value)
}

fn main() {
    let candidates: Vec<String> = ["ada", "grace", "linus"].map(String::from).to_vec();
    println!("request id | voters | ballot box B/voter | outcomes table B/voter | of which the id's bytes");
    for id_len in [45, MAX_REQUEST_ID_BYTES] {
        for n in [100_000u64, 1_000_000] {
            let votes: Vec<Command> = (0..n)
                .map(|i| Command::Vote {
                    request_id: request_id(i, id_len),
                    client: NodeId::client(12345),
                    voter: format!("voter-{i:07}"),
                    candidate: candidates[i as usize % 3].clone(),
                })
                .collect();
            let (whole, state) = bytes_per(n, || {
                let mut s = VotingState::new(candidates.clone());
                for (slot, v) in votes.iter().enumerate() {
                    s.apply(slot as u64 + 1, v);
                }
                s
            });
            let (outcomes, table) = bytes_per(n, || {
                let mut t: HashMap<RequestId, (u64, Result<(), VoteError>)> = HashMap::new();
                for (slot, v) in votes.iter().enumerate() {
                    t.insert(v.request_id().to_string(), (slot as u64 + 1, Ok(())));
                }
                t
            });
            assert_eq!(state.voter_count() as u64, n);
            println!("{id_len:>10} | {n:>7} | {whole:>18.1} | {outcomes:>22.1} | {id_len}");
            drop((state, table));
        }
    }
}

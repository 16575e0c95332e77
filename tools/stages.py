#!/usr/bin/env python3
"""Fold `perf script` samples into the stages of a vote's path and print each stage's
CPU cost per committed vote.

Usage (tools/stages.sh does all of it):
    perf script -F comm,ip,sym -i perf.data | python3 tools/stages.py --votes N --freq F

Every sample is charged to the first frame, from the leaf up, that names a stage: an
allocation inside the ballot box's apply is "apply", one inside the proposer's queue is
"queue/batch", a write(2) from the tcp transport is "send". So each stage's figure is the
CPU time spent in its own code and in everything it calls (allocator, hashing, syscalls).
`--self-test` checks the rules against stacks of known stages.
"""

import argparse
import collections
import re
import sys

# (stage, pattern): first match from the leaf wins, so more specific stages come first
# within one stack walk. Patterns are matched against demangled symbol names.
RULES = [
    ("apply", r"ballot_core::voting::|VotingState"),
    ("learn", r"ballot_core::learner::"),
    ("persist", r"ballot_disk::|MemStorage|fdatasync|fsync|ext4_|jbd2|blk_|nvme|virtio_blk"),
    ("accept", r"ballot_core::acceptor::"),
    ("queue/batch", r"ballot_core::proposer::queue::|take_batch"),
    ("propose", r"ballot_core::proposer::"),
    ("auth/check", r"ballot_core::auth::|check_lengths|Command::size"),
    ("crypto", r"\brustls::|\bring::|\baws_lc|\bchacha20poly1305::|poly1305::|curve25519|x25519|crypto_box::|\bsalsa20::|\baes::|\bsha2::"),
    ("encode/decode", r"rmp_serde::|rmp::|ballot_transports::wire::|serde::|size_hint"),
    ("send", r"tcp_sendmsg|sendmsg|sendto|__sys_send|ballot_transports::mem::MemNetwork::send|fault_model::|ballot_transports::.*::send|zeromq::.*send"),
    ("recv", r"tcp_recvmsg|recvmsg|recvfrom|__sys_recv|ballot_transports::.*recv|zeromq::.*recv|epoll_wait|ep_poll"),
    ("client", r"ballot_runtime::client::"),
    ("node loop", r"ballot_runtime::node::|ballot_runtime::"),
    ("harness", r"ballot_chaos::"),
    ("channels/scheduling", r"tokio::|futex|schedule|try_to_wake_up|__switch_to|finish_task_switch"),
    ("allocator (unattributed)", r"malloc|free|_int_|realloc|memmove|memcpy|mi_"),
]
COMPILED = [(s, re.compile(p)) for s, p in RULES]
ORDER = [s for s, _ in RULES] + ["other"]


# Stages that only take a sample no named stage above claimed: the allocator, tokio's
# scheduler and the node loop sit under (or over) every stage.
FALLBACK = {"node loop", "harness", "channels/scheduling", "allocator (unattributed)"}


def stage_of(frames):
    """frames: symbol names from the leaf to the root. A named stage anywhere in the
    stack wins (the nearest the leaf first); then the fallbacks, in RULES order."""
    for f in frames:
        for stage, rx in COMPILED:
            if stage not in FALLBACK and rx.search(f):
                return stage
    for stage, rx in COMPILED:
        if stage in FALLBACK and any(rx.search(f) for f in frames):
            return stage
    return "other"


def samples(lines, comms):
    """Yield (comm, frames) per sample of `perf script -F comm,ip,sym` output."""
    comm, frames = None, []
    for line in lines:
        if not line.strip():
            if comm is not None and (not comms or any(comm.startswith(c) for c in comms)):
                yield comm, frames
            comm, frames = None, []
            continue
        if not line.startswith((" ", "\t")):
            comm, frames = line.split()[0], []
        else:
            parts = line.strip().split(None, 1)
            frames.append(parts[1] if len(parts) > 1 else parts[0])
    if comm is not None and (not comms or any(comm.startswith(c) for c in comms)):
        yield comm, frames


def fold(lines, comms, detail=None):
    """Samples per stage; with `detail` (a dict), also the leaf symbols of each stage."""
    counts = collections.Counter()
    for _, frames in samples(lines, comms):
        stage = stage_of(frames)
        counts[stage] += 1
        if detail is not None:
            detail.setdefault(stage, collections.Counter())[frames[0] if frames else "?"] += 1
    return counts


def self_test():
    cases = [
        (["_int_malloc", "malloc", "ballot_core::voting::VotingState::apply", "ballot_core::learner::Learner::on_message"], "apply"),
        (["_int_free", "ballot_core::learner::Learner::on_message"], "learn"),
        (["fdatasync", "ballot_disk::DiskStorage::persist", "ballot_runtime::node::run"], "persist"),
        (["tcp_sendmsg", "__sys_sendto", "ballot_transports::tcp::Link::write", "ballot_runtime::node::run"], "send"),
        (["rmp_serde::encode::write", "ballot_transports::wire::encode", "ballot_transports::tcp::x"], "encode/decode"),
        (["ballot_core::proposer::queue::<impl ballot_core::proposer::Proposer>::on_request"], "queue/batch"),
        (["tokio::runtime::task::raw::poll"], "channels/scheduling"),
        (["hashbrown::map::HashMap::insert", "ballot_runtime::client::ClientHandle::submit"], "client"),
        (["ballot_chaos::cluster::vote::<impl ballot_chaos::cluster::Cluster>::vote"], "harness"),
        (["[unknown]"], "other"),
        (["tcp_sendmsg_locked", "sock_write_iter", "ksys_write", "ballot_runtime::node::run"], "send"),
        (["<core::hash::sip::Hasher<S> as core::hash::Hasher>::write", "alloc::string::String::clone"], "other"),
        (["ring::aead::seal", "rustls::conn::x"], "crypto"),
    ]
    bad = [(f, want, stage_of(f)) for f, want in cases if stage_of(f) != want]
    for f, want, got in bad:
        print(f"stages.py self-test: {f[0]}... is {got}, expected {want}", file=sys.stderr)
    sample = "chaos 1\n\t1 malloc\n\t2 ballot_core::learner::Learner::on_message\n\nother 2\n\t3 tokio::x\n\n"
    if fold(sample.splitlines(), ["chaos"]) != collections.Counter({"learn": 1}):
        print("stages.py self-test: sample parsing is wrong", file=sys.stderr)
        bad.append(None)
    return 1 if bad else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--votes", type=int, help="committed votes during the recording")
    ap.add_argument("--freq", type=float, default=999.0, help="perf record -F (samples per CPU second)")
    ap.add_argument("--comm", action="append", default=[], help="only samples of processes whose name starts so (repeatable)")
    ap.add_argument("--detail", type=int, default=0, help="also list each stage's N most sampled leaf symbols")
    ap.add_argument("--self-test", action="store_true")
    a = ap.parse_args()
    if a.self_test:
        sys.exit(self_test())
    detail = {} if a.detail else None
    counts = fold(sys.stdin, a.comm, detail)
    total = sum(counts.values())
    if total == 0:
        print("stages.py: no samples read: is the input `perf script -F comm,ip,sym` output?", file=sys.stderr)
        sys.exit(2)
    cpu = total / a.freq
    print(f"{total} samples, {cpu:.2f} CPU s" + (f", {a.votes} votes: {cpu / a.votes * 1e9:.0f} CPU ns per vote" if a.votes else ""))
    print(f"{'stage':<26} {'share':>7} {'ns/vote':>9}")
    for s in ORDER:
        n = counts.get(s, 0)
        if n == 0:
            continue
        per = f"{n / a.freq / a.votes * 1e9:9.0f}" if a.votes else f"{'-':>9}"
        print(f"{s:<26} {100 * n / total:6.1f}% {per}")
        for sym, k in (detail or {}).get(s, collections.Counter()).most_common(a.detail):
            print(f"    {100 * k / total:5.1f}%  {sym[:110]}")


if __name__ == "__main__":
    main()

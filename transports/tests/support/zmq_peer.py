#!/usr/bin/env python3
"""A libzmq peer (through pyzmq) for transports/tests/libzmq_interop.rs.

It knows nothing of ballot's encoding: the Rust test encodes envelopes with the
project's own encoder and hands them over as hex; this side only moves frames.

  zmq_peer.py push ENDPOINT
      Reads messages from stdin, one a line: hex frames separated by '+' (more than one
      frame makes a multi-part message). Connects a PUSH socket to ENDPOINT, sends them
      in order, and waits (LINGER) until they are handed to the peer.
      Prints "sent N" when done.

      With HEARTBEAT_MS=N in the environment, the socket sends ZMTP heartbeats (PING every
      N ms, the connection dropped after 3N ms without traffic), waits GAP_MS between
      messages, and also prints "connected C disconnected D": how many times libzmq
      connected and dropped the connection while sending.

  zmq_peer.py pull COUNT
      Binds a PULL socket on a free port of 127.0.0.1 and prints "listening ENDPOINT",
      then receives COUNT messages and prints each as "msg HEX[+HEX...]" (its frames).
      Prints "done" after the last one.

With CURVE_SECRETKEY and CURVE_PUBLICKEY (Z85) in the environment, either socket speaks
CURVE with that key pair: a PUSH as client of the server whose public key is
CURVE_SERVERKEY; a PULL as server, which lets in the client keys CURVE_ALLOW names
(Z85, comma-separated, or "*" for any) through pyzmq's ZAP authenticator.

Every wait has a deadline (PEER_TIMEOUT_MS, 20 s by default): on one, the script says
what it was waiting for on stderr and exits with status 3.
"""

import os
import sys
import time

import zmq
import zmq.utils.monitor

TIMEOUT_MS = int(os.environ.get("PEER_TIMEOUT_MS", "20000"))


def fail(what):
    print(f"zmq_peer: {what}", file=sys.stderr, flush=True)
    sys.exit(3)


def curve(ctx, sock, server):
    """Sets the socket up for CURVE if the environment asks for it; returns the ZAP
    authenticator to stop at the end (a server's), or None."""
    secret = os.environ.get("CURVE_SECRETKEY")
    if not secret:
        return None
    sock.curve_secretkey = secret.encode()
    sock.curve_publickey = os.environ["CURVE_PUBLICKEY"].encode()
    if not server:
        sock.curve_serverkey = os.environ["CURVE_SERVERKEY"].encode()
        return None
    from zmq.auth.thread import ThreadAuthenticator

    allow = os.environ.get("CURVE_ALLOW", "*")
    auth = ThreadAuthenticator(ctx)
    auth.start()
    if allow == "*":
        auth.configure_curve(domain="*", location=zmq.auth.CURVE_ALLOW_ANY)
    else:
        keys = {k.strip().encode() for k in allow.split(",") if k.strip()}

        class AllowList:
            def callback(self, domain, key):
                return key in keys

        auth.configure_curve_callback(domain="*", credentials_provider=AllowList())
    sock.curve_server = True
    return auth


def push(endpoint):
    messages = []
    for line in sys.stdin:
        line = line.strip()
        if line:
            messages.append([bytes.fromhex(part) for part in line.split("+")])
    ctx = zmq.Context()
    sock = ctx.socket(zmq.PUSH)
    curve(ctx, sock, server=False)
    # A send blocks only until the message is queued for the connection; LINGER bounds
    # how long close() waits for the queue to be written to the peer.
    sock.setsockopt(zmq.SNDTIMEO, TIMEOUT_MS)
    sock.setsockopt(zmq.LINGER, TIMEOUT_MS)
    # Only queue for a completed connection: a send then waits (up to SNDTIMEO) for the
    # handshake with the peer instead of queueing into a pipe that may never connect.
    sock.setsockopt(zmq.IMMEDIATE, 1)
    heartbeat = int(os.environ.get("HEARTBEAT_MS", "0"))
    gap = int(os.environ.get("GAP_MS", "0")) / 1000
    monitor = None
    if heartbeat:
        sock.setsockopt(zmq.HEARTBEAT_IVL, heartbeat)
        sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, 3 * heartbeat)
        monitor = sock.get_monitor_socket(zmq.EVENT_CONNECTED | zmq.EVENT_DISCONNECTED)
    sock.connect(endpoint)
    for i, frames in enumerate(messages):
        if i and gap:
            time.sleep(gap)
        try:
            sock.send_multipart(frames)
        except zmq.Again:
            fail(f"message {i} not accepted by the PUSH socket within {TIMEOUT_MS} ms")
    if monitor is not None:
        # Events of the whole run, read before close() (which disconnects).
        time.sleep(gap)
        counts = {zmq.EVENT_CONNECTED: 0, zmq.EVENT_DISCONNECTED: 0}
        while monitor.poll(0):
            event = zmq.utils.monitor.recv_monitor_message(monitor)["event"]
            counts[event] = counts.get(event, 0) + 1
        print(f"connected {counts[zmq.EVENT_CONNECTED]} disconnected {counts[zmq.EVENT_DISCONNECTED]}", flush=True)
        sock.disable_monitor()
        monitor.close()
    # close() with LINGER waits for the queue to drain; term() returns after that.
    sock.close()
    ctx.term()
    print(f"sent {len(messages)}", flush=True)


def pull(count):
    ctx = zmq.Context()
    sock = ctx.socket(zmq.PULL)
    auth = curve(ctx, sock, server=True)
    sock.setsockopt(zmq.RCVTIMEO, TIMEOUT_MS)
    sock.setsockopt(zmq.LINGER, 0)
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    print(f"listening tcp://127.0.0.1:{port}", flush=True)
    for i in range(count):
        try:
            frames = sock.recv_multipart()
        except zmq.Again:
            fail(f"message {i + 1} of {count} did not arrive within {TIMEOUT_MS} ms")
        print("msg " + "+".join(f.hex() for f in frames), flush=True)
    sock.close()
    if auth is not None:
        auth.stop()
    ctx.term()
    print("done", flush=True)


def main(argv):
    if len(argv) == 3 and argv[1] == "push":
        push(argv[2])
    elif len(argv) == 3 and argv[1] == "pull":
        pull(int(argv[2]))
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main(sys.argv)

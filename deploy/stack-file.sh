#!/usr/bin/env bash
# Prints docker-compose.yml (or the file given) as a Swarm stack file: the same file
# without the services that have `profiles:` (the `cli` and `jaeger` services), because
# `docker stack deploy` refuses `profiles:` and they are compose-only anyway; without the
# `depends_on:` blocks, whose `condition:` form the stack loader refuses (there a node
# that starts before the credentials exist exits and is restarted); and with each
# `"127.0.0.1:PUBLISHED:TARGET"` port as a host-mode port on PUBLISHED, because Swarm
# cannot bind a published port to one address (and its routing mesh needs IPVS): on Swarm
# the status pages are on every interface of the host, so firewall them there.
#
#   deploy/stack-file.sh | docker stack deploy -c - ballot
#
# It relies on the layout of our file: services indented by two spaces under a top-level
# `services:`, their keys by four. Stops with a message if it finds no service at all.
set -euo pipefail
cd "$(dirname "$0")/.."
file="${1:-docker-compose.yml}"
[ -r "$file" ] || { echo "stack-file: cannot read $file" >&2; exit 2; }

awk '
  # A service block runs from its "  name:" line to the next one or the next top-level
  # key; comment lines just before a service belong to it. A block with a "    profiles:"
  # line is left out.
  function flush() {
    if (block != "" && !profiled) printf "%s", block
    block = ""; profiled = 0
  }
  /^[^ #]/ {
    flush(); printf "%s", pending; pending = ""
    in_services = ($0 ~ /^services:/)
    print; next
  }
  in_services && /^  [A-Za-z0-9_.-]+:/ { flush(); block = pending $0 "\n"; pending = ""; services++; next }
  in_services && /^  #/ { pending = pending $0 "\n"; next }
  in_services && /^    profiles:/ { profiled = 1 }
  # A "depends_on:" block, in a service or in the shared x-node: that line and the
  # deeper-indented lines under it.
  /^ +depends_on:/ { match($0, /^ +/); depth = RLENGTH; skipping = 1; next }
  skipping { match($0, /^ */); if (RLENGTH > depth) next; skipping = 0 }
  in_services && /^    ports: \["127\.0\.0\.1:[0-9]+:[0-9]+"\]/ {
    split($0, p, /[:"]/)
    $0 = "    ports: [{target: " p[5] ", published: " p[4] ", mode: host}]"
  }
  in_services && block != "" { block = block pending $0 "\n"; pending = ""; next }
  { printf "%s", pending; pending = ""; print }
  END {
    flush(); printf "%s", pending
    if (services == 0) { print "stack-file: no services found" > "/dev/stderr"; exit 1 }
  }
' "$file"

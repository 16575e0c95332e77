#!/usr/bin/env bash
# Where a vote's CPU time goes, by stage of its path: records `chaos bench` (and the node
# processes it starts) with perf, then folds the samples with tools/stages.py.
#
#   tools/stages.sh mem 1024            # in-memory transport, 1,024 concurrent voters
#   tools/stages.sh tcp 256             # node processes over tcp, fsync on
#
# Needs perf (Debian: linux-perf) and a release build (cargo build --release -p ballot-chaos).
# The figures are CPU ns per committed vote, summed over every process of the run.
set -euo pipefail
transport=${1:-mem}
voters=${2:-1024}
freq=${FREQ:-999}
root=$(cd "$(dirname "$0")/.." && pwd)
chaos=$root/target/release/chaos
command -v perf >/dev/null || { echo "stages.sh: perf is not installed (apt-get install linux-perf)" >&2; exit 2; }
[ -x "$chaos" ] || { echo "stages.sh: no $chaos: run cargo build --release -p ballot-chaos first" >&2; exit 2; }
out=$(mktemp -d)
trap '[ -n "${KEEP:-}" ] && echo "perf data kept in $out" || rm -rf "$out"' EXIT
if [ "$transport" = mem ]; then
  args=(bench --only-throughput --voters "$voters" --runs 1 --votes "${VOTES:-200000}")
else
  args=(bench --transport "$transport" --voters "$voters" --only-throughput --auth "${AUTH:-on}")
fi
# dwarf call graphs: the release build keeps no frame pointers, but it keeps debug info.
perf record -q -F "$freq" --call-graph dwarf,16384 -o "$out/perf.data" -- "$chaos" "${args[@]}" | tee "$out/bench.txt"
votes=$(sed -n 's/.*committed=\([0-9]*\).*/\1/p' "$out/bench.txt" | tail -1)
perf script -F comm,ip,sym -i "$out/perf.data" 2>/dev/null |
  python3 "$root/tools/stages.py" --detail "${DETAIL:-0}" --votes "${votes:-0}" --freq "$freq" --comm chaos --comm ballot-node --comm tokio

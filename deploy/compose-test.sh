#!/usr/bin/env bash
# End-to-end test of docker-compose.yml: build the image, start the cluster, vote, kill an
# acceptor and the leader, vote again, and check every vote is counted exactly once.
#
#   deploy/compose-test.sh                       # BALLOT_TRANSPORT=zmq for the zmq transport
#
# Skips (exit 0, one line) when there is no Docker engine or no compose tool. Needs curl and
# jq on the host, and host ports 8100-8122 free. Everything it starts (project ballot-test,
# its volumes, its own image tag) is removed on every way out.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "compose-test: $*"; }
fail() { say "FAIL: $*" >&2; exit 1; }

if ! docker info >/dev/null 2>&1; then
  say "skipped: no Docker engine (docker info failed)"
  exit 0
fi
# Compose v2 (the docker plugin) or v1 (docker-compose); both read the same file.
if docker compose version >/dev/null 2>&1; then
  compose=(docker compose)
elif command -v docker-compose >/dev/null 2>&1; then
  compose=(docker-compose)
else
  say "skipped: no compose tool (neither 'docker compose' nor docker-compose)"
  exit 0
fi
for tool in curl jq; do
  command -v "$tool" >/dev/null || fail "$tool is needed on the host"
done

# Our own image tag and project, so a developer's ballot:local and running cluster are
# left alone.
export BALLOT_IMAGE="ballot:compose-test-$$"
export BALLOT_TRANSPORT="${BALLOT_TRANSPORT:-tcp}"
project=ballot-test
dc() { "${compose[@]}" -p "$project" -f docker-compose.yml "$@"; }

cleanup() {
  local rc=$?
  if [ "$rc" -ne 0 ]; then
    say "logs of the failed run follow"
    dc logs --no-color --tail 40 >&2 2>&1 || true
  fi
  dc --profile cli down -v --remove-orphans >/dev/null 2>&1 || true
  docker rmi -f "$BALLOT_IMAGE" >/dev/null 2>&1 || true
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start=$SECONDS
deploy/build-image.sh
say "image built in $((SECONDS - start)) s; starting the cluster ($BALLOT_TRANSPORT)"
dc up -d >/dev/null 2>&1 || { dc up -d; fail "docker compose up failed"; }

# Published HTTP ports (see docker-compose.yml).
declare -A http=(
  [proposer-1]=8101 [proposer-2]=8102 [proposer-3]=8103
  [acceptor-1]=8111 [acceptor-2]=8112 [acceptor-3]=8113
  [learner-1]=8121 [learner-2]=8122
)
discovery=127.0.0.1:8100

# wait_for SECONDS WHAT COMMAND...: run COMMAND every 0.5 s until it succeeds, or fail.
wait_for() {
  local deadline=$((SECONDS + $1)) what=$2
  shift 2
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || fail "$what: not within the deadline"
    sleep 0.5
  done
}
healthy() { curl -fsS -m 2 "127.0.0.1:${http[$1]}/healthz"; }
for n in "${!http[@]}"; do
  wait_for 60 "$n /healthz" healthy "$n"
done
wait_for 30 "a leader listed by discovery" curl -fsS -m 2 "$discovery/leader"
say "cluster up in $((SECONDS - start)) s"

# The CLI runs in a one-off container on the cluster network: the nodes answer it at the
# fixed address the cli service has. One run at a time (one address).
# Compose v1 reports each one-off container it creates on stderr; that line is dropped.
cli() {
  local err rc=0
  err=$(mktemp)
  dc --profile cli run --rm --no-deps -T cli --timeout-ms 15000 "$@" 2>"$err" || rc=$?
  grep -v '^Creating .*_run' "$err" >&2 || true
  rm -f "$err"
  return "$rc"
}

declare -A expected=([ada]=0 [grace]=0 [linus]=0)
candidates=(ada grace linus)
# vote VOTER CANDIDATE: retried (same request id, so it never counts twice) until recorded.
vote() {
  local deadline=$((SECONDS + 60)) out
  until out=$(cli vote --voter "$1" --candidate "$2" 2>&1); do
    [ "$SECONDS" -lt "$deadline" ] || fail "vote $1 -> $2: $out"
    sleep 1
  done
  echo "$out" | grep -q "vote recorded" || fail "vote $1 -> $2: $out"
  expected[$2]=$((expected[$2] + 1))
}
# check_tally: the tally read through the log is exactly what was voted.
check_tally() {
  local got want
  got=$(cli --json results | jq -cS '.tally | with_entries(select(.value > 0))')
  want=$(for c in "${!expected[@]}"; do echo "$c ${expected[$c]}"; done |
    jq -RncS '[inputs | split(" ") | {key: .[0], value: (.[1] | tonumber)} | select(.value > 0)] | from_entries')
  [ "$got" = "$want" ] || fail "tally $got, expected $want ($1)"
  say "tally $got ($1)"
}

for i in 1 2 3 4 5 6; do
  vote "voter-$i" "${candidates[$((i % 3))]}"
done
# The same vote again is the same request: answered, never counted twice.
cli vote --voter voter-1 --candidate "${candidates[1]}" >/dev/null
check_tally "6 votes, one repeated"

leader=$(curl -fsS -m 2 "$discovery/leader" | jq -r .node)
case "$leader" in proposer-?) ;; *) fail "discovery names no proposer as leader: $leader" ;; esac
say "killing acceptor-1 and the leader, $leader"
docker kill "$(dc ps -q acceptor-1)" "$(dc ps -q "$leader")" >/dev/null

for i in 7 8 9 10 11 12; do
  vote "voter-$i" "${candidates[$((i % 3))]}"
done
check_tally "12 votes, after the kills"

# Both learners applied every vote (they follow the log on their own).
learner_total() {
  [ "$(curl -fsS -m 2 "127.0.0.1:${http[$1]}/status" | jq '[.tally[]] | add')" = 12 ]
}
for l in learner-1 learner-2; do
  wait_for 30 "$l applies all 12 votes" learner_total "$l"
done

say "PASS in $((SECONDS - start)) s ($BALLOT_TRANSPORT)"

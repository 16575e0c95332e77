#!/usr/bin/env bash
# End-to-end test of docker-compose.yml: build the image, start the cluster, vote, kill an
# acceptor and the leader, vote again, and check every vote is counted exactly once.
#
#   deploy/compose-test.sh                       # BALLOT_TRANSPORT=zmq for the zmq transport
#   BALLOT_TEST_IMAGE=ballot:x deploy/compose-test.sh   # use that image, built already
#
# Skips (exit 0, one line) when there is no Docker engine or no compose tool. Needs curl and
# jq on the host, and host ports 8100-8122 free. Everything it starts (project ballot-test,
# its network and volumes, and the image tag it built) is removed on every way out; an
# image given in BALLOT_TEST_IMAGE is left alone.
set -euo pipefail
cd "$(dirname "$0")/.."

test_name=compose-test
# shellcheck source=deploy/cluster-checks.sh
. deploy/cluster-checks.sh
need_engine
# Compose v2 (the docker plugin) or v1 (docker-compose); both read the same file.
if docker compose version >/dev/null 2>&1; then
  compose=(docker compose)
elif command -v docker-compose >/dev/null 2>&1; then
  # v1 warns at every command that it ignores deploy.endpoint_mode (a Swarm setting).
  compose=(docker-compose --log-level ERROR)
else
  say "skipped: no compose tool (neither 'docker compose' nor docker-compose)"
  exit 0
fi
choose_image
# Our own project, so a developer's running cluster is left alone.
project=ballot-test
dc() { "${compose[@]}" -p "$project" -f docker-compose.yml "$@"; }

cleanup() {
  local rc=$?
  if [ "$rc" -ne 0 ]; then
    say "logs of the failed run follow"
    dc logs --no-color --tail 40 >&2 2>&1 || true
  fi
  dc --profile cli down -v --remove-orphans >/dev/null 2>&1 || true
  if [ -n "$own_image" ]; then docker rmi -f "$BALLOT_IMAGE" >/dev/null 2>&1 || true; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ready_image
say "starting the cluster ($BALLOT_TRANSPORT, image $BALLOT_IMAGE)"
up_started=$SECONDS
dc up -d >/dev/null 2>&1 || { dc up -d; fail "docker compose up failed"; }

# The CLI runs in a one-off container on the cluster network (it tells the nodes its
# address there). Compose v1 reports each one-off container it creates on stderr; that
# line is dropped.
cli() {
  local err rc=0
  err=$(mktemp)
  dc --profile cli run --rm --no-deps -T cli --timeout-ms 15000 "$@" 2>"$err" || rc=$?
  grep -v '^Creating .*_run' "$err" >&2 || true
  rm -f "$err"
  return "$rc"
}
kill_nodes() {
  local ids=() n
  for n in "$@"; do ids+=("$(dc ps -q "$n")"); done
  docker kill "${ids[@]}" >/dev/null
}

wait_cluster 60
say "cluster up in $((SECONDS - up_started)) s"
node_log() { dc logs --no-color "$1"; }
check_authenticated node_log
run_checks
say "PASS in $((SECONDS - start)) s ($BALLOT_TRANSPORT)"

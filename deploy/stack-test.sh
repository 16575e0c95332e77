#!/usr/bin/env bash
# End-to-end test of docker-compose.yml on Docker Swarm (`docker stack deploy`): build the
# image, deploy the stack, vote, kill an acceptor and the leader, vote again, check every
# vote is counted exactly once; then check that Swarm restarted both (at new addresses,
# found again by name) and that the restarted acceptor takes part in new slots.
#
#   deploy/stack-test.sh                       # BALLOT_TRANSPORT=zmq for the zmq transport
#   BALLOT_TEST_IMAGE=ballot:x deploy/stack-test.sh   # use that image, built already
#
# Skips (exit 0, one line) when there is no Docker engine, when Swarm cannot be
# initialized, or when this engine is part of a Swarm with other nodes (the image exists
# only here). On an engine that is not in a Swarm it runs `docker swarm init` for the test
# and `docker swarm leave --force` after it; an existing single-node Swarm is used and left
# as it was. Needs curl and jq, and host ports 8100-8122 free. Everything it makes (the
# stack, its network and volumes, the image tag it built, the Swarm it initialized and the
# docker_gwbridge network that came with it) is removed on every way out.
set -euo pipefail
cd "$(dirname "$0")/.."

test_name=stack-test
# shellcheck source=deploy/cluster-checks.sh
. deploy/cluster-checks.sh
need_engine
choose_image
stack=ballottest
joined=          # we ran `docker swarm init`
had_gwbridge=    # docker_gwbridge existed before
docker network inspect docker_gwbridge >/dev/null 2>&1 && had_gwbridge=1

in_stack() { docker "$1" ls -q --filter "label=com.docker.stack.namespace=$stack" 2>/dev/null; }
# gone_within SECONDS KIND: wait until nothing of KIND (container, network) is left of the
# stack; false at the deadline.
gone_within() {
  local deadline=$((SECONDS + $1)) kind=$2 left
  while :; do
    if [ "$kind" = container ]; then
      left=$(docker ps -aq --filter "label=com.docker.stack.namespace=$stack")
    else
      left=$(in_stack "$kind")
    fi
    [ -z "$left" ] && return 0
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 1
  done
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [ "$rc" -ne 0 ] && docker stack ps "$stack" >/dev/null 2>&1; then
    say "tasks and logs of the failed run follow"
    docker stack ps "$stack" --no-trunc --format '{{.Name}} {{.CurrentState}} {{.Error}}' >&2 || true
    for s in $(docker stack services "$stack" --format '{{.Name}}' 2>/dev/null); do
      docker service logs --raw --tail 15 "$s" >&2 2>&1 || true
    done
  fi
  # Named and anonymous volumes (discovery's /data) of every task, dead ones included.
  local volumes
  volumes=$(docker ps -aq --filter "label=com.docker.stack.namespace=$stack" |
    xargs -r docker inspect -f '{{range .Mounts}}{{if eq .Type "volume"}}{{.Name}} {{end}}{{end}}' 2>/dev/null || true)
  docker stack rm "$stack" >/dev/null 2>&1 || true
  # stack rm returns at once; containers, then the network, go in the background.
  gone_within 90 container || say "warning: containers of $stack still there after 90 s" >&2
  gone_within 30 network || say "warning: the network of $stack still there after 30 s" >&2
  for v in $volumes $(in_stack volume); do docker volume rm -f "$v" >/dev/null 2>&1 || true; done
  if [ -n "$joined" ]; then
    docker swarm leave --force >/dev/null 2>&1 || say "warning: docker swarm leave --force failed" >&2
    if [ -z "$had_gwbridge" ]; then docker network rm docker_gwbridge >/dev/null 2>&1 || true; fi
  fi
  if [ -n "$own_image" ]; then docker rmi -f "$BALLOT_IMAGE" >/dev/null 2>&1 || true; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

state=$(docker info --format '{{.Swarm.LocalNodeState}}')
case "$state" in
  inactive)
    if ! out=$(timeout 60 docker swarm init --advertise-addr 127.0.0.1 2>&1); then
      say "skipped: Swarm cannot be initialized here: $(echo "$out" | head -1)"
      exit 0
    fi
    joined=1
    ;;
  active)
    if [ "$(docker info --format '{{.Swarm.ControlAvailable}}')" != true ]; then
      say "skipped: this engine is a Swarm worker; the test deploys from a manager"
      exit 0
    fi
    if [ "$(docker node ls -q | wc -l)" -ne 1 ]; then
      say "skipped: this Swarm has other nodes, and the test image exists only on this one"
      exit 0
    fi
    ;;
  *)
    say "skipped: this engine's Swarm state is '$state'"
    exit 0
    ;;
esac
if [ -n "$(docker stack ls --format '{{.Name}}' | grep -x "$stack" || true)" ]; then
  fail "a stack named $stack is already deployed; remove it with docker stack rm $stack"
fi

ready_image
say "deploying the stack ($BALLOT_TRANSPORT, image $BALLOT_IMAGE)"
up_started=$SECONDS
# The image is local: no registry to ask for its digest.
out=$(deploy/stack-file.sh | docker stack deploy --resolve-image never -c - "$stack" 2>&1) ||
  fail "docker stack deploy failed: $out"

# The CLI in a one-off container on the stack's (attachable) network, with the client
# credentials from the stack's certs volume; it tells the nodes its address there.
peers=$(sed -n 's/^x-peers: &peers "\(.*\)"$/\1/p' docker-compose.yml)
[ -n "$peers" ] || fail "no x-peers line in docker-compose.yml"
cli() {
  timeout 120 docker run --rm --network "${stack}_ballot" -v "${stack}_certs:/certs:ro" --entrypoint /ballot \
    "$BALLOT_IMAGE" --transport "$BALLOT_TRANSPORT" --peers "$peers" --discovery discovery:7000 \
    --listen 0.0.0.0:0 --certs /certs --timeout-ms 15000 "$@"
}
task_of() { docker ps -q --filter "label=com.docker.swarm.service.name=${stack}_$1"; }
kill_nodes() {
  local ids=() n
  for n in "$@"; do ids+=("$(task_of "$n")"); done
  docker kill "${ids[@]}" >/dev/null
}
address_of() { curl -fsS -m 2 "$discovery/members" | jq -r --arg n "$1" '.members[] | select(.node == $n) | .addr'; }

wait_cluster 90
say "stack up in $((SECONDS - up_started)) s"
node_log() { docker service logs --raw "${stack}_$1"; }
check_authenticated node_log
before=$(address_of acceptor-1)
run_checks

# Swarm restarts what was killed (restart_policy on-failure): wait for both to serve again,
# then vote on and check the restarted acceptor accepts new slots: the leader found it by
# name at its new address.
wait_cluster 90
after=$(address_of acceptor-1)
say "acceptor-1 and $leader restarted by Swarm (acceptor-1 was at $before, now at $after)"
accepted() { curl -fsS -m 2 "127.0.0.1:${http[acceptor-1]}/metrics" | awk '/^ballot_accepted_slots/ {print $2}'; }
slots=$(accepted)
for i in 13 14 15; do vote "$i"; done
check_tally "15 votes, after the restarts"
check_learners
grows() { [ "$(accepted)" -gt "$slots" ]; }
wait_for 30 "the restarted acceptor-1 accepts new slots (had $slots)" grows
say "restarted acceptor-1 accepted slots: $slots -> $(accepted)"
say "PASS in $((SECONDS - start)) s ($BALLOT_TRANSPORT)"

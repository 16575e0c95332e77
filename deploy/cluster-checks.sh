# What deploy/compose-test.sh and deploy/stack-test.sh share: the start of a test (skip
# without a Docker engine, the host tools, the image) and the checks they run on a seed-2
# cluster started from docker-compose.yml. Sourced, not run, first thing after `cd` to the
# repository, with $test_name set. Before the checks, the caller defines:
#   cli ARGS...         run `ballot ARGS` on the cluster's network
#   kill_nodes NODE...  SIGKILL the containers of these services

say() { echo "$test_name: $*"; }
fail() { say "FAIL: $*" >&2; exit 1; }

# need_engine: skip (exit 0, one line) without a Docker engine; fail without curl or jq.
need_engine() {
  if ! docker info >/dev/null 2>&1; then
    say "skipped: no Docker engine (docker info failed)"
    exit 0
  fi
  local tool
  for tool in curl jq; do
    command -v "$tool" >/dev/null || fail "$tool is needed on the host"
  done
}

# choose_image: BALLOT_IMAGE is BALLOT_TEST_IMAGE (built already, left alone) or a tag of
# our own ($own_image set), so a developer's ballot:local is left alone. The transport is
# BALLOT_TRANSPORT, tcp by default.
choose_image() {
  own_image=
  if [ -n "${BALLOT_TEST_IMAGE:-}" ]; then
    export BALLOT_IMAGE="$BALLOT_TEST_IMAGE"
  else
    export BALLOT_IMAGE="ballot:$test_name-$$"
    own_image=1
  fi
  export BALLOT_TRANSPORT="${BALLOT_TRANSPORT:-tcp}"
}

# ready_image: build our own tag, or check the given one exists. Sets $start.
ready_image() {
  start=$SECONDS
  if [ -n "$own_image" ]; then
    deploy/build-image.sh
    say "image built in $((SECONDS - start)) s"
  else
    docker image inspect "$BALLOT_IMAGE" >/dev/null 2>&1 || fail "BALLOT_TEST_IMAGE=$BALLOT_IMAGE: no such image"
  fi
}

# Published HTTP ports (see docker-compose.yml).
declare -A http=(
  [proposer-1]=8101 [proposer-2]=8102 [proposer-3]=8103
  [acceptor-1]=8111 [acceptor-2]=8112 [acceptor-3]=8113
  [learner-1]=8121 [learner-2]=8122
)
discovery=127.0.0.1:8100
candidates=(ada grace linus)
declare -A expected=([ada]=0 [grace]=0 [linus]=0)
voted=0

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

# wait_cluster SECONDS: every node answers /healthz and discovery names a leader.
wait_cluster() {
  local n
  for n in "${!http[@]}"; do
    wait_for "$1" "$n /healthz" healthy "$n"
  done
  wait_for 30 "a leader listed by discovery" curl -fsS -m 2 "$discovery/leader"
}

# vote N: voter-N votes, retried under one request id (so it never counts twice) until
# recorded. Without --request-id each command would be a new request (a random id), and a
# retry of a vote that counted unconfirmed would be refused as a second vote.
vote() {
  local voter="voter-$1" candidate="${candidates[$(($1 % 3))]}" deadline=$((SECONDS + 60)) out
  until out=$(cli vote --voter "$voter" --candidate "$candidate" --request-id "req-$voter" 2>&1); do
    [ "$SECONDS" -lt "$deadline" ] || fail "vote $voter -> $candidate: $out"
    sleep 1
  done
  echo "$out" | grep -q "vote recorded" || fail "vote $voter -> $candidate: $out"
  expected[$candidate]=$((expected[$candidate] + 1))
  voted=$((voted + 1))
}

# check_tally WHEN: the tally read through the log is exactly what was voted.
check_tally() {
  local got want
  got=$(cli --json results | jq -cS '.tally | with_entries(select(.value > 0))')
  want=$(for c in "${!expected[@]}"; do echo "$c ${expected[$c]}"; done |
    jq -RncS '[inputs | split(" ") | {key: .[0], value: (.[1] | tonumber)} | select(.value > 0)] | from_entries')
  [ "$got" = "$want" ] || fail "tally $got, expected $want ($1)"
  say "tally $got ($1)"
}

# Both learners applied every vote (they follow the log on their own).
learner_total() {
  [ "$(curl -fsS -m 2 "127.0.0.1:${http[$1]}/status" | jq '[.tally[]] | add')" = "$voted" ]
}
check_learners() {
  local l
  for l in learner-1 learner-2; do
    wait_for 30 "$l applies all $voted votes" learner_total "$l"
  done
}

# check_authenticated LOGS...: every node's "listening" line names the transport's
# mechanism (mutual TLS on tcp, CURVE on zmq), never insecure; LOGS is the command that
# prints the nodes' logs.
check_authenticated() {
  local want n count
  case "$BALLOT_TRANSPORT" in zmq) want=curve ;; *) want=mtls ;; esac
  for n in "${!http[@]}"; do
    count=$("$@" "$n" 2>&1 | grep -c "listening node=$n .*auth=\"$want\"" || true)
    [ "$count" -ge 1 ] || fail "$n does not say it listens with auth=\"$want\""
  done
  say "every node listens with auth=\"$want\""
}

# The end-to-end story: votes, a repeated vote, the kill of an acceptor and of the leader,
# votes again, and every vote counted exactly once. Leaves the name of the killed leader
# in $leader.
run_checks() {
  local i
  for i in 1 2 3 4 5 6; do vote "$i"; done
  # The same request again is answered as the first time, never counted twice; a new
  # request from the same voter is refused as a second vote (exit 3).
  cli vote --voter voter-1 --candidate "${candidates[1]}" --request-id req-voter-1 >/dev/null
  local rc=0 out
  out=$(cli vote --voter voter-1 --candidate "${candidates[2]}" 2>&1) || rc=$?
  [ "$rc" -eq 3 ] && echo "$out" | grep -q "already voted" || fail "a second vote of voter-1: exit $rc, $out"
  check_tally "6 votes, one repeated"

  leader=$(curl -fsS -m 2 "$discovery/leader" | jq -r .node)
  case "$leader" in proposer-?) ;; *) fail "discovery names no proposer as leader: $leader" ;; esac
  say "killing acceptor-1 and the leader, $leader"
  kill_nodes acceptor-1 "$leader"

  for i in 7 8 9 10 11 12; do vote "$i"; done
  check_tally "12 votes, after the kills"
  check_learners
}

# Shared helpers of the cluster tests (tests/cluster/*.sh), on top of
# tests/lib.sh (PY, fail, skip, fm_idx, mlp_model). Each test brings up its own
# simulated cluster with scripts/cluster.sh (a fresh random name and subnet, so
# tests running in parallel do not collide), tears it down at exit, also on
# failure, and checks that nothing of it is left.
#
#   cluster_up K [RATE]  K hosts with links of RATE (default 1gbit); sets C to
#                        the cluster's name; exits 77 (skip) with cluster.sh's
#                        reason when this machine cannot run one (not root, no
#                        ip netns, no tbf)
#   crun R MPIRUN-ARGS... mpirun across C's hosts, R ranks per host (at most
#                        300 s); in the background, call "$CLUSTER_SH" run
#                        directly: its pid is then mpirun's
#   cluster_down         down C and fail unless nothing of it is left
#                        (namespaces, links, processes, files)
#   world_pid RANK       the pid of C's process that is MPI world rank RANK
#   start_bg OUT RUN_DIR R MPIRUN-ARGS...
#                        mpirun across C in the background (R ranks per host,
#                        output in OUT, pid in MPIPID); returns 1 s after the
#                        run's start record appears in RUN_DIR/metrics.jsonl
#   MPIPID               a background mpirun the EXIT trap kills (if set)
set -uo pipefail
: "${NNTRAIN:?}"
: "${NN_SOURCE_DIR:?}"
. "$NN_SOURCE_DIR/tests/lib.sh"
CLUSTER_SH=$NN_SOURCE_DIR/scripts/cluster.sh
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
probe=$("$CLUSTER_SH" probe 2>&1)
case $? in
  0) ;;
  77) skip "${probe#cluster.sh: }" ;;
  *) fail "cluster.sh probe: $probe" ;;
esac
T=$(mktemp -d)
C=
MPIPID=
cluster_cleanup() {
  if [ -n "$MPIPID" ] && kill -0 "$MPIPID" 2>/dev/null; then kill -KILL "$MPIPID" 2>/dev/null; fi
  [ -n "$C" ] && "$CLUSTER_SH" down --name "$C" >&2
  rm -rf "$T"
}
trap cluster_cleanup EXIT

cluster_up() {
  local rc=0
  C=$("$CLUSTER_SH" up "$1" --rate "${2:-1gbit}" 2>"$T/up.err") || rc=$?
  [ "$rc" = 77 ] && skip "$(sed 's/^cluster.sh: //' "$T/up.err")"
  [ "$rc" = 0 ] || fail "cluster.sh up $*: exit $rc: $(cat "$T/up.err")"
}

crun() {
  local r=$1; shift
  timeout -k 5 300 "$CLUSTER_SH" run --name "$C" --ranks "$r" -- "$@"
}

cluster_down() {
  "$CLUSTER_SH" down --name "$C" || fail "cluster.sh down $C failed"
  "$CLUSTER_SH" check --name "$C" || fail "cluster $C left something behind"
  echo "ok: cluster $C down, nothing left (namespaces, links, processes, files)"
  C=
}

world_pid() {
  grep -lsz "^NN_CLUSTER_MEMBER=$C\$" /proc/[0-9]*/environ | cut -d/ -f3 | while read -r p; do
    if grep -qsxz "OMPI_COMM_WORLD_RANK=$1" "/proc/$p/environ" &&
       [ "$(readlink "/proc/$p/exe")" = "$(readlink -f "$NNTRAIN")" ]; then echo "$p"; fi
  done | head -1
}

start_bg() {
  local out=$1 metrics=$2/metrics.jsonl r=$3
  shift 3
  "$CLUSTER_SH" run --name "$C" --ranks "$r" -- "$@" >"$out" 2>&1 &
  MPIPID=$!
  for _ in $(seq 600); do
    grep -qs '"event": "start"' "$metrics" && break
    kill -0 "$MPIPID" 2>/dev/null || fail "the job ended before training: $(cat "$out")"
    sleep 0.1
  done
  grep -qs '"event": "start"' "$metrics" || fail "no start record in 60 s: $(cat "$out")"
  sleep 1   # a few steps in
}

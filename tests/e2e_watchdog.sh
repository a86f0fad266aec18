#!/bin/bash
# e2e_watchdog.sh: the all-reduce watchdog ends a job whose rank stopped
# (SIGSTOP) within timeout + 5 s, non-zero, with one message naming that rank
# and its host, in the flat ring and in the hierarchical all-reduce on
# simulated hosts of 2 (a leader and a non-leader stopped); also when the
# stop leaves the live ranks in different all-reduces (--fault-split: rank 0
# in a control ring's, rank 1 in the algorithm's, as a trainer's step
# control and gradient sync can be), which share the control ring's
# watchdog: with a watchdog each (--fault-split own, the control case) each
# live rank names the other; and a rank that dies (SIGKILL) ends the job
# within seconds, non-zero.
# Uses the hidden `nntrain bench allreduce --stall-rank/--kill-rank` options.
set -u
: "${NNTRAIN:?set NNTRAIN to the nntrain binary}"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
fail=0
T=3

# run NAME LIMIT ARGS...: run nntrain bench under mpirun -np 3 with a hard
# timeout; sets rc and secs, output in $out/NAME.
run() {
  local name=$1 limit=$2
  shift 2
  local t0 t1
  t0=$(date +%s%N)
  timeout -k 5 "$limit" mpirun -np 3 --oversubscribe "$NNTRAIN" bench allreduce \
    --sizes 64K --iters 5 "$@" >"$out/$name" 2>&1
  rc=$?
  t1=$(date +%s%N)
  secs=$(( (t1 - t0) / 1000000000 ))
}

H=$(hostname)
# stall NAME RANK HOST ARGS...: rank RANK stopped; expect one message naming it on HOST.
stall() {
  local name=$1 r=$2 host=$3
  shift 3
  run $name 40 --timeout $T --stall-rank $r "$@"
  n=$(grep -cF "nntrain: rank $r (host $host) did not reach the all-reduce of step 3 within $T s; aborting the job" "$out/$name")
  lines=$(grep -c "did not reach" "$out/$name")
  if [ "$rc" -eq 0 ] || [ "$rc" -eq 124 ]; then
    echo "FAIL: $name: exit $rc after ${secs}s"; fail=1
  elif [ "$secs" -gt $((T + 5)) ]; then
    echo "FAIL: $name: job took ${secs}s, more than timeout+5 = $((T + 5))s"; fail=1
  elif [ "$n" -ne 1 ] || [ "$lines" -ne 1 ]; then
    echo "FAIL: $name: expected exactly one message naming rank $r (host $host), got:"; fail=1
    cat "$out/$name"
  else
    echo "ok: $name: exit $rc after ${secs}s: $(grep 'did not reach' "$out/$name")"
  fi
}
stall stall0 0 "$H"
stall stall2 2 "$H"
# hierarchical on hosts {0, 1} and {2}: rank 1 stops the host phase, rank 2 the leaders' ring
stall hier1 1 "$H/sim0" --hosts-of 2 --fault-algo hierarchical
stall hier2 2 "$H/sim1" --hosts-of 2 --fault-algo hierarchical
stall hrs1 1 "$H/sim0" --hosts-of 2 --fault-algo hierarchical_rs
# the live ranks in two all-reduces, one watchdog
stall split2 2 "$H" --fault-split shared
stall splith2 2 "$H/sim1" --hosts-of 2 --fault-algo hierarchical --fault-split shared
run splitown 40 --timeout $T --stall-rank 2 --fault-split own
if grep -qE "ranks [01] \(host [^)]*\), 2 \(host" "$out/splitown"; then
  echo "ok: control: with a watchdog per all-reduce a live rank names the other: $(grep -m1 'did not reach' "$out/splitown")"
else
  echo "FAIL: control: --fault-split own did not split the live ranks:"; cat "$out/splitown"; fail=1
fi

run kill 30 --timeout 0 --kill-rank 1
if [ "$rc" -eq 0 ] || [ "$rc" -eq 124 ] || [ "$secs" -gt 10 ]; then
  echo "FAIL: killed rank: exit $rc after ${secs}s"; fail=1; cat "$out/kill"
else
  echo "ok: killed rank 1: job ended with exit $rc after ${secs}s"
fi

# No timeout: a healthy run still finishes and exits 0.
run healthy 60 --timeout $T
if [ "$rc" -ne 0 ]; then echo "FAIL: healthy run exit $rc"; cat "$out/healthy"; fail=1; else echo "ok: healthy run"; fi
exit $fail

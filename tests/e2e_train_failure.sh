#!/usr/bin/env bash
# A training job whose rank dies (SIGKILL) or stalls (SIGSTOP) ends, non-zero,
# within seconds (the watchdog's timeout plus a few seconds for a stall), with
# a message naming the rank; it never hangs. Runs at -np 3.
set -uo pipefail
: "${NNTRAIN:?}"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
PY=/usr/bin/python3
T=$(mktemp -d)
trap 'pkill -CONT -f "$T/job.toml" 2>/dev/null; pkill -KILL -f "$T/job.toml" 2>/dev/null; rm -rf "$T"' EXIT
fail=0

# A data set big enough that training runs for a while: 4096 random samples.
$PY - "$T" <<'PY'
import random, sys
random.seed(1)
with open(sys.argv[1] + "/d.csv", "w") as f:
    f.write(",".join("f%d" % i for i in range(32)) + ",y\n")
    for i in range(4096):
        x = [random.uniform(-1, 1) for _ in range(32)]
        f.write(",".join("%.4f" % v for v in x) + ",%d\n" % (int(sum(x[:4]) > 0)))
PY
"$NNTRAIN" prepare csv "$T/d.csv" --label y --classes 2 --out "$T/d" >/dev/null || exit 1
cat > "$T/job.toml" <<EOF2
[data]
train = "$T/d/train-*.h5"
[model]
[[model.layers]]
type = "dense"
units = 256
activation = "relu"
[[model.layers]]
type = "dense"
units = 2
[train]
epochs = 100000
batch_size = 48
[run]
dir = "$T/run"
EOF2

# pid_of_rank R: the pid of rank R of the running job.
pid_of_rank() {
  for p in $(pgrep -f "nntrain $T/job.toml"); do
    if tr '\0' '\n' < /proc/$p/environ 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=$1"; then
      echo "$p"; return 0
    fi
  done
  return 1
}

# start: launch the job in the background, wait until it is training.
start() {
  timeout -k 5 120 mpirun -np 3 --oversubscribe "$NNTRAIN" "$T/job.toml" --no-progress \
    --timeout "$1" >"$T/out" 2>&1 &
  job=$!
  for _ in $(seq 100); do
    [ -s "$T/run/metrics.jsonl" ] && grep -q '"epoch"' "$T/run/metrics.jsonl" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "FAIL: the job did not start training"; cat "$T/out"; fail=1
}

# finish LIMIT WHAT: wait for the job; check it ended non-zero within LIMIT s.
finish() {
  local t0=$1 limit=$2 what=$3
  wait "$job"; rc=$?
  local secs=$(( ($(date +%s%N) - t0) / 1000000 ))
  if [ $rc -eq 0 ] || [ $rc -eq 124 ] || [ $secs -gt $((limit * 1000)) ]; then
    echo "FAIL: $what: exit $rc after ${secs} ms (limit ${limit} s)"; cat "$T/out"; fail=1
  else
    echo "ok: $what: exit $rc after ${secs} ms"
  fi
}

# 1. A rank is killed: the job ends within seconds.
rm -rf "$T/run"; start 30
p=$(pid_of_rank 1) || { echo "FAIL: no rank 1"; exit 1; }
t0=$(date +%s%N); kill -KILL "$p"
finish "$t0" 10 "SIGKILL of rank 1"
grep -q "rank 1 .*exited on signal 9" "$T/out" || { echo "FAIL: no message naming rank 1"; cat "$T/out"; fail=1; }

# 2. A rank stops (SIGSTOP): the watchdog (3 s) ends the job, naming it and the step.
rm -rf "$T/run"; start 3
p=$(pid_of_rank 2) || { echo "FAIL: no rank 2"; exit 1; }
t0=$(date +%s%N); kill -STOP "$p"
finish "$t0" 8 "SIGSTOP of rank 2 (timeout 3 s)"
kill -CONT "$p" 2>/dev/null; kill -KILL "$p" 2>/dev/null
n=$(grep -cE "rank 2 \(host [^)]+\) did not reach the all-reduce of step [0-9]+ within 3 s" "$T/out")
[ "$n" -eq 1 ] || { echo "FAIL: want one message naming rank 2 and the step:"; cat "$T/out"; fail=1; }
grep -q "did not reach" "$T/out" && echo "   message: $(grep 'did not reach' "$T/out")"
exit $fail

#!/usr/bin/env bash
# train.on_nonfinite (docs/training.md#non-finite-steps) at -np 2 and -np 3:
# the fault-injection hook NN_FAULT_NONFINITE_STEPS makes chosen global steps'
# loss NaN on every rank (needs a -DNN_FAULT_INJECTION=ON build; skipped
# otherwise).
#   stop (default): every rank exits 7, one message naming the step, no
#        MPI_ABORT banner, the last checkpoint intact (a resume completes);
#   skip: the run completes, metrics.jsonl counts the skipped steps, the
#        parameters are the same bytes at -np 2 and -np 3 and differ from a
#        run without faults; K non-finite steps in a row exit 7.
set -uo pipefail
: "${NNTRAIN:?}"
. "$(dirname "$0")/lib.sh"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
"$NNTRAIN" --version | grep -qF "build: fault injection" ||
  skip "this build has no fault injection (-DNN_FAULT_INJECTION=ON)"
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
MPI="timeout -k 5 120 mpirun --oversubscribe"

tiny_csv "$T/d.csv" 600
"$NNTRAIN" prepare csv "$T/d.csv" --label label --classes 2 --out "$T/d" >/dev/null ||
  fail "prepare"
# job NAME POLICY: a 2-epoch job, checkpoint every 5 steps
job() {
  cat > "$T/$1.toml" <<EOF2
[data]
train = "$T/d/train-*.h5"
[model]
[[model.layers]]
type = "dense"
units = 16
activation = "relu"
[[model.layers]]
type = "dense"
units = 2
[train]
epochs = 2
batch_size = 24
on_nonfinite = "$2"
nonfinite_max_skips = 3
[checkpoint]
every_steps = 5
[run]
dir = "$T/run-$1"
EOF2
}
job stop stop
job skip skip

for np in 2 3; do
  # stop: exit 7 on every rank, one message, no abort banner, no NaN checkpoint
  rm -rf "$T/run-stop"
  NN_FAULT_NONFINITE_STEPS=12 $MPI -np $np "$NNTRAIN" "$T/stop.toml" --quiet >"$T/out" 2>&1
  rc=$?
  [ $rc = 7 ] || { cat "$T/out"; fail "stop at -np $np: exit $rc, expected 7"; }
  grep -q "MPI_ABORT" "$T/out" && { cat "$T/out"; fail "stop at -np $np: MPI_ABORT banner"; }
  n=$(grep -c "non-finite loss or gradient at step 13 (epoch 1)" "$T/out")
  [ "$n" = 1 ] || { cat "$T/out"; fail "stop at -np $np: $n messages naming step 13, expected 1"; }
  # the last good checkpoint (step 10) resumes and the run completes
  $MPI -np $np "$NNTRAIN" "$T/stop.toml" --quiet --resume >"$T/out" 2>&1 ||
    { cat "$T/out"; fail "stop at -np $np: resume from the last checkpoint failed"; }
  echo "ok: stop at -np $np"

  # skip: steps 4 and 9 dropped, the run completes
  rm -rf "$T/run-skip"
  NN_FAULT_NONFINITE_STEPS=3,8 $MPI -np $np "$NNTRAIN" "$T/skip.toml" --quiet \
    --dump-params "$T/p$np" >"$T/out" 2>&1 || { cat "$T/out"; fail "skip at -np $np"; }
  n=$(grep -c '"nonfinite_skip"' "$T/run-skip/metrics.jsonl")
  [ "$n" = 2 ] || fail "skip at -np $np: metrics.jsonl has $n nonfinite_skip records, expected 2"
  n=$(grep -c "non-finite loss or gradient, step skipped" "$T/out")
  [ "$n" = 2 ] || { cat "$T/out"; fail "skip at -np $np: $n skip lines, expected 2"; }
  grep -q "MPI_ABORT" "$T/out" && fail "skip at -np $np: MPI_ABORT banner"
  grep -q '"nonfinite_skipped": *2' "$T/run-skip/metrics.jsonl" ||
    fail "skip at -np $np: the summary record lacks nonfinite_skipped = 2"
  # three in a row (nonfinite_max_skips = 3): exit 7
  rm -rf "$T/run-skip"
  NN_FAULT_NONFINITE_STEPS=5,6,7 $MPI -np $np "$NNTRAIN" "$T/skip.toml" --quiet >"$T/out" 2>&1
  rc=$?
  [ $rc = 7 ] || { cat "$T/out"; fail "3 skips in a row at -np $np: exit $rc, expected 7"; }
  grep -q "3 non-finite steps in a row (the last at step 8" "$T/out" ||
    { cat "$T/out"; fail "3 skips in a row at -np $np: no message naming step 8"; }
  echo "ok: skip at -np $np"
done
# The ring sums in a rank-count-dependent order (docs/allreduce.md), so -np 2
# and -np 3 agree up to float rounding: the same steps were dropped at both.
rm -rf "$T/run-skip"
$MPI -np 2 "$NNTRAIN" "$T/skip.toml" --quiet --dump-params "$T/p0" >"$T/out" 2>&1 ||
  fail "run without faults"
"$PY" - "$T/p0" "$T/p2" "$T/p3" <<'PYEOF' || fail "skip: parameters"
import array, sys
def load(p):
    a = array.array("f"); a.frombytes(open(p, "rb").read()); return a
p0, p2, p3 = (load(p) for p in sys.argv[1:])
d23 = max(abs(x - y) for x, y in zip(p2, p3))
d02 = max(abs(x - y) for x, y in zip(p0, p2))
print("max |p2 - p3| = %g, max |p2 - no faults| = %g" % (d23, d02))
assert len(p2) == len(p3) == len(p0) > 0
assert d23 < 1e-4, "-np 2 and -np 3 dropped different steps"
assert d02 > 100 * max(d23, 1e-7), "the dropped steps changed nothing"
PYEOF
echo "ok: skip is N-invariant and drops the steps"
exit 0

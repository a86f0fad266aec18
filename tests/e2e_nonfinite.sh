#!/usr/bin/env bash
# train.on_nonfinite (docs/training.md#non-finite-steps) at -np 2 and -np 3:
# the fault-injection hook NN_FAULT_NONFINITE_STEPS makes chosen global steps'
# loss NaN on every rank (needs a -DNN_FAULT_INJECTION=ON build; skipped
# otherwise).
#   stop (default): every rank exits 7, one message naming the step, no
#        MPI_ABORT banner, the last checkpoint intact (a resume completes);
#   skip: the run completes, metrics.jsonl counts the skipped steps, the
#        parameters are the same bytes at -np 2 and -np 3 and differ from a
#        run without faults; K non-finite steps in a row exit 7; the counters
#        are in the checkpoint (a resumed run counts on).
#   rollback: a NaN at step 13 (checkpoints every 5 steps) reloads step 10's
#        checkpoint and halves the learning rate: the final parameters are the
#        bytes of a run stopped at step 10 and resumed with half the rate; a
#        run stopped after the rollback and resumed (without the fault) ends
#        with the same bytes (the rollback count is in the checkpoint); the
#        4th rollback (nonfinite_max_rollbacks = 3) and a NaN before the first
#        checkpoint exit 7 with one message; -np 2 and -np 3 agree; a job
#        without checkpoints during the run is refused (exit 3, file:line).
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
job rollback rollback

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
  # the skip counters are part of the run state: a run stopped after two skips
  # in a row and resumed stops at the third (nonfinite_max_skips = 3)
  rm -rf "$T/run-skip"
  NN_FAULT_NONFINITE_STEPS=5,6 $MPI -np $np "$NNTRAIN" "$T/skip.toml" --quiet --steps 7 \
    >"$T/out" 2>&1 || { cat "$T/out"; fail "skip at -np $np: run to step 7"; }
  NN_FAULT_NONFINITE_STEPS=7 $MPI -np $np "$NNTRAIN" "$T/skip.toml" --quiet --resume \
    >"$T/out" 2>&1
  rc=$?
  [ $rc = 7 ] || { cat "$T/out"; fail "skips across a resume at -np $np: exit $rc, expected 7"; }
  grep -q "3 non-finite steps in a row (the last at step 8" "$T/out" ||
    { cat "$T/out"; fail "skips across a resume at -np $np: the count did not carry over"; }
  echo "ok: skip at -np $np"

  # rollback: NaN at step 13 -> back to step 10, lr x0.5
  rm -rf "$T/run-rollback"
  NN_FAULT_NONFINITE_STEPS=12 $MPI -np $np "$NNTRAIN" "$T/rollback.toml" --quiet \
    --dump-params "$T/r$np" >"$T/out" 2>&1 || { cat "$T/out"; fail "rollback at -np $np"; }
  grep -q "MPI_ABORT" "$T/out" && fail "rollback at -np $np: MPI_ABORT banner"
  n=$(grep -c "non-finite loss or gradient; rolled back to step 10 (.*step-000000000010.h5), learning rate x0.5" "$T/out")
  [ "$n" = 1 ] || { cat "$T/out"; fail "rollback at -np $np: $n rollback lines, expected 1"; }
  "$PY" - "$T/run-rollback/metrics.jsonl" <<'PYEOF' || fail "rollback at -np $np: metrics.jsonl"
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
rb = [r for r in recs if r.get("event") == "nonfinite_rollback"]
assert len(rb) == 1, rb
assert (rb[0]["step"], rb[0]["to_step"], rb[0]["rollbacks"], rb[0]["lr_scale"]) == (13, 10, 1, 0.5), rb
summ = [r for r in recs if r.get("event") == "summary"]
assert summ and summ[-1]["nonfinite_rollbacks"] == 1, summ
PYEOF
  # the same as stopping at step 10 and resuming with half the rate (Adam: lr
  # scales the update only; the schedule is constant)
  rm -rf "$T/run-stop"
  $MPI -np $np "$NNTRAIN" "$T/stop.toml" --quiet --steps 10 >"$T/out" 2>&1 ||
    { cat "$T/out"; fail "reference to step 10 at -np $np"; }
  $MPI -np $np "$NNTRAIN" "$T/stop.toml" --quiet --resume --set optimizer.lr=0.0005 \
    --dump-params "$T/h$np" >"$T/out" 2>&1 || { cat "$T/out"; fail "reference resume at -np $np"; }
  cmp -s "$T/r$np" "$T/h$np" ||
    fail "rollback at -np $np: parameters differ from step 10 resumed with lr x0.5"
  # stopped after the rollback (step 20) and resumed without the fault: same bytes
  rm -rf "$T/run-rollback"
  NN_FAULT_NONFINITE_STEPS=12 $MPI -np $np "$NNTRAIN" "$T/rollback.toml" --quiet --steps 20 \
    >"$T/out" 2>&1 || { cat "$T/out"; fail "rollback to step 20 at -np $np"; }
  $MPI -np $np "$NNTRAIN" "$T/rollback.toml" --quiet --resume --dump-params "$T/s$np" \
    >"$T/out" 2>&1 || { cat "$T/out"; fail "rollback resume at -np $np"; }
  cmp -s "$T/r$np" "$T/s$np" ||
    fail "rollback at -np $np: a resumed run lost the rollback's learning-rate factor"
  # bounded: the 4th non-finite visit of step 13 stops the run
  rm -rf "$T/run-rollback"
  NN_FAULT_NONFINITE_STEPS=12,12,12,12 $MPI -np $np "$NNTRAIN" "$T/rollback.toml" --quiet \
    >"$T/out" 2>&1
  rc=$?
  [ $rc = 7 ] || { cat "$T/out"; fail "4 rollbacks at -np $np: exit $rc, expected 7"; }
  grep -q "MPI_ABORT" "$T/out" && fail "4 rollbacks at -np $np: MPI_ABORT banner"
  n=$(grep -c "at step 13 (epoch 1) after 3 rollbacks (train.nonfinite_max_rollbacks = 3)" "$T/out")
  [ "$n" = 1 ] || { cat "$T/out"; fail "4 rollbacks at -np $np: $n messages, expected 1"; }
  # nothing to roll back to before the first checkpoint
  rm -rf "$T/run-rollback"
  NN_FAULT_NONFINITE_STEPS=2 $MPI -np $np "$NNTRAIN" "$T/rollback.toml" --quiet >"$T/out" 2>&1
  rc=$?
  [ $rc = 7 ] || { cat "$T/out"; fail "rollback before a checkpoint at -np $np: exit $rc"; }
  grep -q "at step 3 (epoch 1) and no checkpoint to roll back to yet" "$T/out" ||
    { cat "$T/out"; fail "rollback before a checkpoint at -np $np: no message"; }
  echo "ok: rollback at -np $np"
done
# rollback needs checkpoints during the run: refused when the job writes none
"$NNTRAIN" check "$T/rollback.toml" --set checkpoint.every_steps=0 \
  --set checkpoint.every_epochs=0 >"$T/out" 2>&1
rc=$?
[ $rc = 3 ] || { cat "$T/out"; fail "rollback without checkpoints: exit $rc, expected 3"; }
grep -q "rollback.toml:.*train.on_nonfinite = \"rollback\" reloads the newest checkpoint" "$T/out" ||
  { cat "$T/out"; fail "rollback without checkpoints: the message does not name the job and key"; }
# The ring sums in a rank-count-dependent order (docs/allreduce.md), so -np 2
# and -np 3 agree up to float rounding: the same steps were dropped at both.
rm -rf "$T/run-skip"
$MPI -np 2 "$NNTRAIN" "$T/skip.toml" --quiet --dump-params "$T/p0" >"$T/out" 2>&1 ||
  fail "run without faults"
# same_steps WHAT NP2 NP3: the runs at -np 2 and 3 agree to float rounding and
# differ from the run without faults ($T/p0) by far more
same_steps() {
  "$PY" - "$1" "$T/p0" "$2" "$3" <<'PYEOF' || fail "$1: parameters"
import array, sys
def load(p):
    a = array.array("f"); a.frombytes(open(p, "rb").read()); return a
what, (p0, p2, p3) = sys.argv[1], (load(p) for p in sys.argv[2:])
d23 = max(abs(x - y) for x, y in zip(p2, p3))
d02 = max(abs(x - y) for x, y in zip(p0, p2))
print("%s: max |np2 - np3| = %g, max |np2 - no faults| = %g" % (what, d23, d02))
assert len(p2) == len(p3) == len(p0) > 0
assert d23 < 1e-4, "-np 2 and -np 3 took different steps"
assert d02 > 100 * max(d23, 1e-7), "the non-finite steps changed nothing"
PYEOF
}
same_steps skip "$T/p2" "$T/p3"
echo "ok: skip is N-invariant and drops the steps"
same_steps rollback "$T/r2" "$T/r3"
echo "ok: rollback is N-invariant"
exit 0

#!/usr/bin/env bash
# End-to-end training: loss falls on Fashion-MNIST (1 rank and 2 ranks), the same
# job on 1 and 2 ranks ends with the same parameters, repeated runs are
# bit-identical, replicas stay identical at 3 ranks, a partial final batch with
# empty slices works, and bad set-ups fail once, clearly, before training.
set -euo pipefail
: "${NNTRAIN:?}" "${NN_SOURCE_DIR:?}"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"   # PY, fail, expect_fail, fm_idx
need_py numpy
MPI="timeout 300 mpirun --oversubscribe"

# --- data: 12k Fashion-MNIST training images (real data), the test set --------------
fm_idx train 0 12000 "$T/sub"
"$NNTRAIN" prepare idx "$T/sub-img" "$T/sub-lab" --out "$T/fm" --split train --shards 3 >/dev/null
"$NNTRAIN" prepare idx /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz \
  /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz --out "$T/fm" --split test --shards 2 \
  --stats "$T/fm/train-000.h5" >/dev/null

cat > "$T/mlp.toml" <<EOF2
name = "e2e_mlp"
[data]
train = "$T/fm/train-*.h5"
test = "$T/fm/test-*.h5"
$(mlp_model)
[train]
epochs = 2
batch_size = 96
seed = 7
[optimizer]
type = "sgd"
lr = 0.05
momentum = 0.9
[run]
dir = "$T/run"
EOF2

# --- 1 rank: loss falls, accuracy is far above chance, metrics.jsonl written ---------
"$NNTRAIN" "$T/mlp.toml" --no-progress > "$T/out1" || fail "1-rank training exited $?"
cat "$T/out1"
$PY - "$T" <<'PY' || fail "1-rank metrics"
import json, sys
rec = [json.loads(l) for l in open(sys.argv[1] + "/run/metrics.jsonl")]
ep = [r for r in rec if "epoch" in r]
assert len(ep) == 2, ep
assert ep[1]["loss"] < ep[0]["loss"], "loss did not fall"
assert ep[0]["loss"] < 2.30, "first epoch loss not below chance level"
assert ep[1]["test_accuracy"] > 0.75, ep[1]
for k in ("lr", "accuracy", "samples_per_s", "elapsed_s", "test_loss", "step"):
    assert k in ep[1], k
for e in ep:  # where the time went: no gradient sync on one rank
    assert e["sync_wait_s"] == 0, e
    assert 0 <= e["data_wait_s"] and 0 <= e["control_s"], e
    assert e["data_wait_s"] + e["control_s"] < e["epoch_s"], e
PY
grep -q "^test accuracy: " "$T/out1" || fail "no final test accuracy line"

# --- N-invariance: 50 steps at -np 1 and -np 2 agree to 1e-4 ------------------------
"$NNTRAIN" "$T/mlp.toml" --steps 50 --quiet --set run.dir="\"$T/r1\"" --dump-params "$T/p1" \
  || fail "np1 run"
$MPI -np 2 "$NNTRAIN" "$T/mlp.toml" --steps 50 --quiet --set run.dir="\"$T/r2\"" \
  --dump-params "$T/p2" --check-replicas || fail "np2 run"
$PY - "$T/p1" "$T/p2" <<'PY' || fail "np1 vs np2 parameters differ"
import sys, numpy as np
a = np.fromfile(sys.argv[1], dtype=np.float32); b = np.fromfile(sys.argv[2], dtype=np.float32)
assert a.size == b.size and a.size == 784*64 + 64 + 64*10 + 10, (a.size, b.size)
rel = np.abs(a - b).max() / np.abs(a).max()
print("np1 vs np2 after 50 steps: max|diff|/max|p| = %.3g" % rel)
assert rel < 1e-4, rel
assert np.abs(a).max() > 0
PY

# --- 4 ranks (oversubscribed): replicas identical every step, same result as 1 rank --
$MPI -np 4 "$NNTRAIN" "$T/mlp.toml" --steps 50 --quiet --set run.dir="\"$T/r4\"" \
  --dump-params "$T/p4" --check-replicas || fail "np4 run"
$PY - "$T/p1" "$T/p4" <<'PY' || fail "np1 vs np4 parameters differ"
import sys, numpy as np
a = np.fromfile(sys.argv[1], dtype=np.float32); b = np.fromfile(sys.argv[2], dtype=np.float32)
rel = np.abs(a - b).max() / np.abs(a).max()
print("np1 vs np4 after 50 steps: max|diff|/max|p| = %.3g" % rel)
assert rel < 1e-4, rel
PY

# --- bit-identical repeats and identical replicas at 3 ranks (partial last batch) ----
for i in 1 2; do
  $MPI -np 3 "$NNTRAIN" "$T/mlp.toml" --steps 130 --quiet --set run.dir="\"$T/r3\"" \
    --set train.batch_size=99 --dump-params "$T/p3_$i" --check-replicas || fail "np3 run $i"
done
cmp -s "$T/p3_1" "$T/p3_2" || fail "repeated -np 3 runs differ"
$PY - "$T/r3/metrics.jsonl" <<'PY' || fail "np3 epoch timing fields"
import json, sys
ep = [json.loads(l) for l in open(sys.argv[1])]
ep = [r for r in ep if "epoch" in r and "epoch_s" in r]
assert ep, "no epoch record"
for e in ep:  # every step waits for the gradient sync at least for its transfer
    print("np3 epoch %d: epoch_s %.3f data_wait_s %.4f sync_wait_s %.4f control_s %.4f" % (
        e["epoch"], e["epoch_s"], e["data_wait_s"], e["sync_wait_s"], e["control_s"]))
    assert 0 < e["sync_wait_s"] < e["epoch_s"], e
    assert 0 <= e["data_wait_s"] < e["epoch_s"] and 0 <= e["control_s"] < e["epoch_s"], e
PY

# --- a final batch of one sample: two of three ranks get an empty slice ------------
tiny_csv "$T/tiny.csv" 97
"$NNTRAIN" prepare csv "$T/tiny.csv" --label label --out "$T/tiny" --classes 2 >/dev/null
cat > "$T/tiny.toml" <<EOF2
[data]
train = "$T/tiny/train-*.h5"
[model]
[[model.layers]]
type = "dense"
units = 2
[train]
epochs = 3
batch_size = 96
[run]
dir = "$T/tinyrun"
EOF2
$MPI -np 3 "$NNTRAIN" "$T/tiny.toml" --quiet --check-replicas || fail "empty slices at -np 3"

# --- bad set-ups: one message, before training, documented exit codes ---------------
set +e
$MPI -np 3 "$NNTRAIN" "$T/mlp.toml" --set train.batch_size=100 >"$T/o" 2>"$T/e"; rc=$?
set -e
[ $rc -eq 3 ] || fail "batch not divisible by ranks: exit $rc, want 3"
[ "$(grep -c 'must divide evenly' "$T/e")" -eq 1 ] || { cat "$T/e"; fail "want one message"; }
[ ! -s "$T/o" ] || { cat "$T/o"; fail "training started despite the error"; }

printf '[data]\ntrain = "%s"\n[model]\n[[model.layers]]\ntype = "dense"\nunits = 2\n[train]\nbatch_sise = 4\n' \
  "$T/tiny/train-*.h5" > "$T/bad.toml"
set +e
$MPI -np 2 "$NNTRAIN" "$T/bad.toml" >"$T/o" 2>"$T/e"; rc=$?
set -e
[ $rc -eq 3 ] || fail "bad job at -np 2: exit $rc, want 3"
[ "$(grep -c 'bad.toml:' "$T/e")" -eq 1 ] || { cat "$T/e"; fail "want exactly one error line"; }
grep -q "did you mean 'batch_size'" "$T/e" || { cat "$T/e"; fail "no suggestion"; }

set +e
$MPI -np 2 "$NNTRAIN" "$T/tiny.toml" --set data.train="\"$T/nothing-*.h5\"" >"$T/o" 2>"$T/e"; rc=$?
set -e
[ $rc -eq 4 ] || fail "missing data: exit $rc, want 4"
[ "$(grep -c nntrain: "$T/e")" -eq 1 ] || { cat "$T/e"; fail "want one message for missing data"; }
echo "e2e_train: all checks passed"

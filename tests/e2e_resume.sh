#!/usr/bin/env bash
# Checkpoints and exact resume: a -np 2 run interrupted at several points
# (mid-epoch, at an epoch boundary) and resumed ends byte-identical to the
# uninterrupted run (parameters, optimizer slots, step, LR, data position); a
# truncated newest checkpoint is skipped with a warning; a -np 2 checkpoint
# resumes on 1 rank; h5py + NumPy recompute predictions from the documented
# layout and match `nntrain predict`; eval prints the metrics.
set -euo pipefail
: "${NNTRAIN:?}"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"   # PY, fail, expect_fail, fm_idx
need_py h5py numpy
MPI="timeout 300 mpirun --oversubscribe"
SRC=/usr/share/datasets/fashion-mnist

fm_idx train 0 6000 "$T/train"
fm_idx t10k 0 1000 "$T/test"
"$NNTRAIN" prepare idx "$T/train-img" "$T/train-lab" --out "$T/d" --split train --shards 2 >/dev/null
"$NNTRAIN" prepare idx "$T/test-img" "$T/test-lab" --out "$T/d" --split test \
  --stats "$T/d/train-000.h5" >/dev/null

job() { # job RUN_DIR
cat <<EOF2
name = "resume"
[data]
train = "$T/d/train-*.h5"
test = "$T/d/test-*.h5"
validation_split = 0.1
[model]
[[model.layers]]
type = "dense"
units = 32
activation = "relu"
[[model.layers]]
type = "dense"
units = 10
[train]
epochs = 3
batch_size = 96
seed = 5
[optimizer]
type = "adam"
lr = 0.002
[schedule]
type = "cosine"
[checkpoint]
every_epochs = 1
keep = 10
[early_stopping]
monitor = "val_accuracy"
[run]
dir = "$1"
EOF2
}
job "$T/A" > "$T/a.toml"
job "$T/B" > "$T/b.toml"
job "$T/C" > "$T/c.toml"

# A: uninterrupted. 5400 training samples / 96 = 57 steps (the last has 24).
$MPI -np 2 "$NNTRAIN" "$T/a.toml" --quiet --dump-params "$T/pA" || fail "run A"
[ -f "$T/A/best.h5" ] || fail "no best.h5"
ls "$T/A/checkpoints" | grep -q 'step-000000000171.h5' || { ls "$T/A/checkpoints"; fail "no final checkpoint"; }

# B: stopped mid-epoch 1 (step 20), at the end of epoch 2 (step 114), mid-epoch 3 (step 150).
$MPI -np 2 "$NNTRAIN" "$T/b.toml" --quiet --steps 20 || fail "B part 1"
$MPI -np 2 "$NNTRAIN" "$T/b.toml" --quiet --steps 114 --resume || fail "B part 2"
$MPI -np 2 "$NNTRAIN" "$T/b.toml" --quiet --steps 150 --resume || fail "B part 3"
$MPI -np 2 "$NNTRAIN" "$T/b.toml" --resume --dump-params "$T/pB" > "$T/outB" || fail "B part 4"
grep -q "resuming from .*step-000000000150.h5: step 150" "$T/outB" || { cat "$T/outB"; fail "B did not resume at 150"; }
cmp "$T/pA" "$T/pB" || fail "interrupted -np 2 run differs from the uninterrupted one"

# Final checkpoints: parameters, optimizer slots and state byte-identical.
$PY - "$T/A/checkpoints/step-000000000171.h5" "$T/B/checkpoints/step-000000000171.h5" <<'PY' || fail "final checkpoints differ"
import sys, h5py, numpy as np
a, b = h5py.File(sys.argv[1], "r"), h5py.File(sys.argv[2], "r")
def tensors(f, root):
    out = {}
    f[root].visititems(lambda n, o: out.__setitem__(n, o[()]) if isinstance(o, h5py.Dataset) else None)
    return out
assert a.attrs["version"] == 2 and list(a.attrs["replicas"]) == ["model"], dict(a.attrs)
for root in ("replicas/model/params", "replicas/model/optimizer"):
    ta, tb = tensors(a, root), tensors(b, root)
    assert ta.keys() == tb.keys() and ta, (root, ta.keys(), tb.keys())
    for k in ta:
        assert ta[k].tobytes() == tb[k].tobytes(), (root, k)
for k in a["state"].attrs:
    if k in ("elapsed_s",):
        continue
    va, vb = a["state"].attrs[k], b["state"].attrs[k]
    assert np.array_equal(va, vb, equal_nan=True), (k, va, vb)
assert int(a["state"].attrs["step"]) == 171 and int(a["state"].attrs["epoch"]) == 3
assert int(a["replicas/model"].attrs["optim_t"]) == int(b["replicas/model"].attrs["optim_t"]) == 171
print("final checkpoints identical: params, optimizer slots, state")
PY

# C: a -np 2 checkpoint resumed on 1 rank continues the same sample order.
$MPI -np 2 "$NNTRAIN" "$T/c.toml" --quiet --steps 30 || fail "C part 1"
"$NNTRAIN" "$T/c.toml" --quiet --resume --dump-params "$T/pC" || fail "C part 2 on 1 rank"
$PY - "$T/pA" "$T/pC" <<'PY' || fail "np2 -> np1 resume drifted"
import sys, numpy as np
a = np.fromfile(sys.argv[1], np.float32); c = np.fromfile(sys.argv[2], np.float32)
rel = np.abs(a - c).max() / np.abs(a).max()
print("resume -np 2 -> -np 1: max|diff|/max|p| = %.3g" % rel)
assert rel < 1e-3, rel
PY

# D: a truncated newest checkpoint is skipped with a warning.
cp -r "$T/B" "$T/D"
job "$T/D" > "$T/d.toml"
rm -f "$T/D/checkpoints/step-000000000171.h5"   # as if the run had stopped at 150
newest=$(ls "$T/D/checkpoints"/step-*.h5 | sort | tail -1)
head -c 3000 "$newest" > "$T/x" && mv "$T/x" "$newest"
$MPI -np 2 "$NNTRAIN" "$T/d.toml" --resume --dump-params "$T/pD" >"$T/outD" 2>"$T/errD" || { cat "$T/errD"; fail "D"; }
grep -q "warning: skipping checkpoint" "$T/errD" || { cat "$T/errD"; fail "no warning for the truncated checkpoint"; }
cmp "$T/pA" "$T/pD" || fail "resume from the older checkpoint differs"
# --resume PATH with a damaged file: a clear error, exit 5.
set +e
"$NNTRAIN" "$T/d.toml" --resume "$newest" >/dev/null 2>"$T/e"; rc=$?
set -e
[ $rc -eq 5 ] || { cat "$T/e"; fail "damaged --resume PATH: exit $rc, want 5"; }
[ "$(wc -l < "$T/e")" -eq 1 ] || { cat "$T/e"; fail "want one line"; }
# A forbidden change: the model's shape.
set +e
"$NNTRAIN" "$T/d.toml" --resume --set model.layers.0.units=16 >/dev/null 2>"$T/e"; rc=$?
set -e
[ $rc -eq 5 ] && grep -q "may not change on resume" "$T/e" || { cat "$T/e"; fail "model change on resume: exit $rc"; }

# E: predict and the documented layout.
CK="$T/A/checkpoints/step-000000000171.h5"
"$NNTRAIN" predict "$CK" "$T/d/test-*.h5" --out "$T/pred.csv" >/dev/null || fail "predict"
$PY - "$CK" "$T/d/test-000.h5" "$T/pred.csv" <<'PY' || fail "predictions from h5py differ"
import sys, csv, h5py, numpy as np
ck, shard = h5py.File(sys.argv[1], "r"), h5py.File(sys.argv[2], "r")
m = ck["replicas/model"]
W0 = m["params/dense0/weight"][()]; b0 = m["params/dense0/bias"][()]
W1 = m["params/dense1/weight"][()]; b1 = m["params/dense1/bias"][()]
assert W0.shape == (32, 784) and W1.shape == (10, 32), (W0.shape, W1.shape)
x = shard["features"][()].reshape(len(shard["features"]), -1).astype(np.float64)
x *= float(shard.attrs["feature_scale"])
x = (x - float(shard.attrs["mean"][0])) / float(shard.attrs["std"][0])
h = np.maximum(x @ W0.T + b0, 0)
z = h @ W1.T + b1
p = np.exp(z - z.max(1, keepdims=True)); p /= p.sum(1, keepdims=True)
rows = list(csv.DictReader(open(sys.argv[3])))
assert len(rows) == len(x) == 1000, len(rows)
q = np.array([[float(r["p%d" % j]) for j in range(10)] for r in rows])
pred = np.array([int(r["pred"]) for r in rows]); lab = np.array([int(r["label"]) for r in rows])
assert np.abs(p - q).max() < 1e-4, np.abs(p - q).max()
assert (pred == p.argmax(1)).mean() > 0.999
assert (lab == shard["labels"][()]).all()
print("h5py/NumPy predictions match nntrain predict: max |dp| = %.2g, accuracy %.4f" % (np.abs(p - q).max(), (pred == lab).mean()))
PY
"$NNTRAIN" eval "$CK" "$T/d/test-*.h5" > "$T/eval" || fail "eval"
grep -qi "accuracy" "$T/eval" && grep -qi "macro" "$T/eval" || { cat "$T/eval"; fail "eval output"; }
$MPI -np 2 "$NNTRAIN" eval "$CK" "$T/d/test-*.h5" > "$T/eval2" || fail "eval at -np 2"
[ "$(grep -i '^accuracy\|accuracy ' "$T/eval" | head -1)" = "$(grep -i '^accuracy\|accuracy ' "$T/eval2" | head -1)" ] \
  || { cat "$T/eval" "$T/eval2"; fail "eval differs between 1 and 2 ranks"; }
"$NNTRAIN" inspect "$CK" > "$T/insp" || fail "inspect checkpoint"
grep -q "dense0" "$T/insp" && grep -q "step" "$T/insp" || { cat "$T/insp"; fail "inspect output"; }
echo "e2e_resume: all checks passed"

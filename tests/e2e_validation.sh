#!/usr/bin/env bash
# Validation during training: a validation split carved the same way on 1 and
# 3 ranks, k-fold cross-validation with its summary, early stopping that
# stops and restores the best model, reduce-on-plateau lowering the LR, and
# the validation metrics in metrics.jsonl.
set -euo pipefail
: "${NNTRAIN:?}"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"   # PY, fail, expect_fail, fm_idx
MPI="timeout 300 mpirun --oversubscribe"

# Two Gaussian blobs per class, 3 classes, 8 features: learnable, not trivially.
$PY - "$T" <<'PY'
import random, sys
random.seed(4)
with open(sys.argv[1] + "/d.csv", "w") as f:
    f.write(",".join("f%d" % i for i in range(8)) + ",y\n")
    for i in range(1200):
        y = random.randrange(3)
        x = [random.gauss(0.8 * (j % 3 == y) - 0.4 * (j % 2 == y % 2), 1.0) for j in range(8)]
        f.write(",".join("%.5f" % v for v in x) + ",%d\n" % y)
PY
"$NNTRAIN" prepare csv "$T/d.csv" --label y --classes 3 --out "$T/d" >/dev/null

base() { cat <<EOF2
[data]
train = "$T/d/train-*.h5"
[model]
[[model.layers]]
type = "dense"
units = 16
activation = "relu"
[[model.layers]]
type = "dense"
units = 3
[train]
epochs = 6
batch_size = 60
[optimizer]
type = "sgd"
lr = 0.05
momentum = 0.9
[checkpoint]
every_epochs = 0
at_end = false
EOF2
}

# --- a validation split: same figures on 1 and 3 ranks ---------------------------
{ base; printf '[run]\ndir = "%s/v1"\n' "$T"; } > "$T/v.toml"
"$NNTRAIN" "$T/v.toml" --quiet --set data.validation_split=0.25 || fail "split np1"
$MPI -np 3 "$NNTRAIN" "$T/v.toml" --quiet --set data.validation_split=0.25 --set run.dir="\"$T/v3\"" \
  || fail "split np3"
$PY - "$T/v1/metrics.jsonl" "$T/v3/metrics.jsonl" <<'PY' || fail "validation metrics"
import json, sys
def epochs(p): return [r for r in map(json.loads, open(p)) if "epoch" in r]
a, b = epochs(sys.argv[1]), epochs(sys.argv[2])
assert len(a) == len(b) == 6
for k in ("val_loss", "val_accuracy", "val_macro_f1", "val_macro_precision", "val_macro_recall"):
    assert k in a[-1], (k, a[-1])
# 300 validation samples: counts are exact, so accuracy matches to rounding of sums
assert abs(a[-1]["val_accuracy"] - b[-1]["val_accuracy"]) < 0.02, (a[-1], b[-1])
assert a[-1]["val_accuracy"] > 0.5, a[-1]
PY
grep -q '"train_samples": 900' "$T/v1/metrics.jsonl" || fail "split did not hold out 300 samples"

# --- k-fold ----------------------------------------------------------------------
{ base; printf '[run]\ndir = "%s/kf"\n' "$T"; } > "$T/kf.toml"
$MPI -np 2 "$NNTRAIN" "$T/kf.toml" --kfold 3 --repeats 2 --set train.epochs=2 > "$T/kfout" \
  || { cat "$T/kfout"; fail "kfold"; }
grep -q "mean val_loss" "$T/kfout" || { cat "$T/kfout"; fail "no k-fold summary"; }
[ "$(grep -c 'repeat [12] fold [123]:' "$T/kfout")" -eq 6 ] || { cat "$T/kfout"; fail "want 6 fold lines"; }
$PY - "$T/kf/kfold.json" <<'PY' || fail "kfold.json"
import json, sys, statistics
# strict JSON: NaN / Infinity are not JSON (nntrain writes null)
k = json.load(open(sys.argv[1]), parse_constant=lambda c: sys.exit("not JSON: " + c))
assert k["folds"] == 3 and k["repeats"] == 2 and len(k["val_accuracy"]) == 6
assert abs(statistics.mean(k["val_accuracy"]) - k["mean_val_accuracy"]) < 1e-9
assert abs(statistics.stdev(k["val_accuracy"]) - k["std_val_accuracy"]) < 1e-9
# Each repeat must draw its own folds. Training is deterministic, so a repeat
# that reused repeat 1's folds (in any order) would reproduce its validation
# losses exactly: the two repeats' sets of losses must differ, fold by fold.
r0, r1 = k["val_loss"][:3], k["val_loss"][3:]
assert len(set(r0)) == 3, ("folds of one repeat gave equal losses", r0)
assert not set(r0) & set(r1), ("a fold of repeat 2 repeats one of repeat 1", r0, r1)
PY
grep -q '"train_samples": 800' "$T/kf/kfold-r0-f0/metrics.jsonl" || fail "fold sizes"

# --- early stopping: a learning rate that makes things worse stops it ------------
{ base; printf '[run]\ndir = "%s/es"\n[early_stopping]\nmonitor = "val_loss"\npatience = 2\nrestore_best = true\n' "$T"; } > "$T/es.toml"
"$NNTRAIN" "$T/es.toml" --set data.validation_split=0.25 --set train.epochs=40 \
  --set optimizer.lr=0.9 --set optimizer.momentum=0.99 > "$T/esout" || { cat "$T/esout"; fail "es run"; }
grep -q "early stopping:" "$T/esout" || { cat "$T/esout"; fail "did not stop early"; }
grep -q "restored the best model" "$T/esout" || { cat "$T/esout"; fail "best not restored"; }
[ -f "$T/es/best.h5" ] || fail "no best.h5"
n=$(grep -c '"epoch"' "$T/es/metrics.jsonl")
[ "$n" -lt 40 ] || fail "ran all 40 epochs"

# --- reduce on plateau lowers the learning rate ----------------------------------
{ base; printf '[run]\ndir = "%s/pl"\n[schedule]\ntype = "reduce_on_plateau"\nmonitor = "val_loss"\npatience = 0\nfactor = 0.5\n' "$T"; } > "$T/pl.toml"
"$NNTRAIN" "$T/pl.toml" --quiet --set data.validation_split=0.25 --set train.epochs=12 || fail "plateau run"
$PY - "$T/pl/metrics.jsonl" <<'PY' || fail "plateau did not lower the LR"
import json, sys
lr = [r["lr"] for r in map(json.loads, open(sys.argv[1])) if "epoch" in r]
assert lr[0] == 0.05 and min(lr) < 0.05 and all(b <= a for a, b in zip(lr, lr[1:])), lr
PY
echo "e2e_validation: all checks passed"

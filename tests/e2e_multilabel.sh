#!/usr/bin/env bash
# End-to-end multi-label training: `prepare csv --multilabel` makes shards with
# /targets [N, K] of 0/1 and attribute multi_label (read back with h5py); a job
# with train.loss = "binary_cross_entropy" learns the labels (val mAP and ROC AUC
# in metrics.jsonl, under the names early_stopping.monitor takes); the same job
# at -np 1, 2 and 3 ends with the same parameters and the same validation
# figures; the monitor names val_roc_auc, its alias val_auc and val_map pick the
# best epoch from the figures metrics.jsonl shows; mismatched set-ups fail with
# one line.
set -uo pipefail   # no -e: expect_fail runs commands that must fail
: "${NNTRAIN:?}" "${NN_SOURCE_DIR:?}"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"   # PY, fail, expect_fail
need_py numpy h5py
MPI="timeout 300 mpirun --oversubscribe"

# --- data: 6 uniform features, 4 labels that are functions of them ----------------
# Label columns sit between feature columns and one is named by number, so the
# column selection is exercised; l3 is rare (about 1 in 8); 5% of labels are flipped.
"$PY" - "$T" <<'PY' || fail "csv generation"
import random, sys
random.seed(5)
for split, n in (("train", 1500), ("val", 400), ("test", 400)):
    with open("%s/%s.csv" % (sys.argv[1], split), "w") as f:
        f.write("f0,f1,l0,f2,f3,l1,l2,f4,f5,l3\n")
        for _ in range(n):
            x = [random.uniform(-1, 1) for _ in range(6)]
            l = [x[0] + x[1] > 0, x[2] > 0.3, x[3] - x[4] > 0, x[0] - x[5] > 1]
            l = [v != (random.random() < 0.05) for v in l]  # 5% label noise
            f.write("%f,%f,%d,%f,%f,%d,%d,%f,%f,%d\n" % (x[0], x[1], l[0], x[2], x[3], l[1],
                                                      l[2], x[4], x[5], l[3]))
PY
"$NNTRAIN" prepare csv "$T/train.csv" --multilabel l0,l1,6,l3 --out "$T/d" --shards 3 \
  >/dev/null || fail "prepare train"
for s in val test; do
  "$NNTRAIN" prepare csv "$T/$s.csv" --multilabel l0,l1,l2,l3 --out "$T/d" --split $s \
    --stats "$T/d/train-000.h5" >/dev/null || fail "prepare $s"
done
$PY - "$T" <<'PY' || fail "multi-label shard layout"
import h5py, numpy as np, sys
d = sys.argv[1]
with h5py.File(d + "/d/train-000.h5", "r") as f:
    assert f.attrs["multi_label"] == 1 and f.attrs["num_classes"] == 0, dict(f.attrs)
    t, x = f["targets"][...], f["features"][...]
    assert t.shape == (500, 4) and t.dtype == np.float32, (t.shape, t.dtype)
    assert x.shape == (500, 6), x.shape
    assert set(np.unique(t)) <= {0.0, 1.0}
rows = np.loadtxt(d + "/train.csv", delimiter=",", skiprows=1)[:500]
assert (t == rows[:, [2, 5, 6, 9]]).all(), "labels are not the named columns"
assert np.allclose(x, rows[:, [0, 1, 3, 4, 7, 8]], atol=1e-6), "features are not the rest"
print("train-000: targets", t.shape, "positives per label", t.sum(0))
PY

cat > "$T/ml.toml" <<EOF2
name = "e2e_multilabel"
[data]
train = "$T/d/train-*.h5"
validation = "$T/d/val-*.h5"
test = "$T/d/test-*.h5"
[model]
input_shape = [6]
[[model.layers]]
type = "dense"
units = 32
activation = "relu"
[[model.layers]]
type = "dense"
units = 4
[train]
epochs = 8
batch_size = 48
seed = 11
loss = "binary_cross_entropy"
[optimizer]
type = "sgd"
lr = 0.1
momentum = 0.9
[early_stopping]
monitor = "val_roc_auc"
restore_best = true
[run]
dir = "$T/run"
EOF2

# --- 1 rank: loss falls, labels learnt, figures named as the monitor names them -----
"$NNTRAIN" "$T/ml.toml" --no-progress > "$T/out1" || fail "1-rank training exited $?"
cat "$T/out1"
$PY - "$T" <<'PY' || fail "1-rank metrics"
import json, sys
ep = [json.loads(l) for l in open(sys.argv[1] + "/run/metrics.jsonl")]
ep = [r for r in ep if "epoch" in r]
assert len(ep) == 8, len(ep)
assert ep[-1]["loss"] < ep[0]["loss"] < 0.6931, "loss did not fall from log 2"
for k in ("val_roc_auc", "val_map", "val_micro_f1", "val_macro_f1", "val_accuracy",
          "test_map", "test_roc_auc"):
    assert k in ep[-1], k
best = max(e["val_map"] for e in ep)
assert best > 0.85, ep[-1]
assert max(e["val_roc_auc"] for e in ep) > 0.9, ep[-1]
assert "val_auc" not in ep[-1], "one name for AUC"
# the training accuracy counts a sample right when all its labels are, as val_accuracy does
acc, vacc = ep[-1]["accuracy"], ep[-1]["val_accuracy"]
assert 0.3 < acc <= 1 and abs(acc - vacc) < 0.2, (acc, vacc)
assert ep[-1]["accuracy"] > ep[0]["accuracy"], [e["accuracy"] for e in ep]
print("train accuracy %.4f (first epoch %.4f), val_accuracy %.4f" % (acc, ep[0]["accuracy"], vacc))
print("best val_map %.4f, val_roc_auc %.4f" % (best, max(e["val_roc_auc"] for e in ep)))
PY
grep -q "val_map 0\.[0-9]*  val_roc_auc 0\." "$T/out1" || fail "no val_map on the epoch line"

# The monitor reads the figure metrics.jsonl calls val_roc_auc (its alias val_auc
# the same; val_map the mAP): the restored best is the maximum of that column.
check_best() { # MONITOR COLUMN OUT RUNDIR
  $PY - "$@" <<'PY' || fail "monitor $1 does not follow metrics.jsonl's $2"
import json, re, sys
mon, col, out, run = sys.argv[1:5]
ep = [json.loads(l) for l in open(run + "/metrics.jsonl")]
ep = [r for r in ep if "epoch" in r]
vals = [e[col] for e in ep]
m = re.search(r"restored the best model \(epoch (\d+), %s ([0-9.e+-]+)\)" % mon, open(out).read())
assert m, "no restore line for " + mon
epoch, v = int(m.group(1)), float(m.group(2))
best = max(vals)
assert abs(v - best) <= 1e-5 * best, (v, best)
assert vals.index(best) + 1 == epoch, (epoch, vals)
print("%s: best epoch %d, %s %.6g = max of metrics.jsonl's %s" % (mon, epoch, mon, v, col))
PY
}
check_best val_roc_auc val_roc_auc "$T/out1" "$T/run"
"$NNTRAIN" "$T/ml.toml" --no-progress --set early_stopping.monitor='"val_auc"' \
  --set run.dir="\"$T/run_alias\"" > "$T/out_alias" || fail "val_auc alias run"
check_best val_auc val_roc_auc "$T/out_alias" "$T/run_alias"
"$NNTRAIN" "$T/ml.toml" --no-progress --set early_stopping.monitor='"val_map"' \
  --set run.dir="\"$T/run_map\"" > "$T/out_map" || fail "val_map run"
check_best val_map val_map "$T/out_map" "$T/run_map"

# `nntrain eval` on a multi-label set: the report's figures are the ones training logged
"$NNTRAIN" eval "$T/run/best.h5" "$T/d/val-*.h5" > "$T/eval" || fail "eval exited $?"
cat "$T/eval"
$PY - "$T" <<'PY' || fail "eval report"
import json, re, sys
d = sys.argv[1]
text = open(d + "/eval").read()
ep = [json.loads(l) for l in open(d + "/run/metrics.jsonl")]
best = max((r for r in ep if "val_roc_auc" in r), key=lambda r: r["val_roc_auc"])
m = re.search(r"^mAP: ([0-9.]+)$", text, re.M)
a = re.search(r"^ROC AUC: ([0-9.]+) \(macro over 4 labels", text, re.M)
assert m and a, text
assert abs(float(m.group(1)) - best["val_map"]) < 1e-4, (m.group(1), best["val_map"])
assert abs(float(a.group(1)) - best["val_roc_auc"]) < 1e-4, (a.group(1), best["val_roc_auc"])
assert len(re.findall(r"^[0-3] +[0-9.]+", text, re.M)) == 4, "per-label rows"
PY

# --- N-invariance: 60 steps (2 epochs) at -np 1, 2, 3 -------------------------------
# batch 48 over 2 and 3 ranks; the last batch of an epoch (1500 = 31 x 48 + 12) is partial
"$NNTRAIN" "$T/ml.toml" --steps 60 --quiet --set run.dir="\"$T/r1\"" --dump-params "$T/p1" \
  || fail "np1 run"
for np in 2 3; do
  $MPI -np $np "$NNTRAIN" "$T/ml.toml" --steps 60 --quiet --set run.dir="\"$T/r$np\"" \
    --dump-params "$T/p$np" --check-replicas || fail "np$np run"
done
$PY - "$T" <<'PY' || fail "np1 vs np2 vs np3 differ"
import json, sys, numpy as np
d = sys.argv[1]
a = np.fromfile(d + "/p1", dtype=np.float32)
assert a.size == 6 * 32 + 32 + 32 * 4 + 4, a.size
recs = {}
for np_ in (1, 2, 3):
    ep = [json.loads(l) for l in open("%s/r%d/metrics.jsonl" % (d, np_))]
    recs[np_] = [r for r in ep if "val_map" in r]
    assert recs[np_], "no validated epoch"
for np_ in (2, 3):
    b = np.fromfile("%s/p%d" % (d, np_), dtype=np.float32)
    rel = np.abs(a - b).max() / np.abs(a).max()
    print("np1 vs np%d after 60 steps: max|diff|/max|p| = %.3g" % (np_, rel))
    assert rel < 1e-4, rel
    for e1, e2 in zip(recs[1], recs[np_]):
        for k in ("val_map", "val_roc_auc", "val_micro_f1", "val_loss"):
            assert abs(e1[k] - e2[k]) < 1e-3, (np_, k, e1[k], e2[k])
print("validation figures agree at -np 1, 2, 3:",
      ["%.4f" % recs[n][-1]["val_map"] for n in (1, 2, 3)])
PY

# --- bad set-ups: one line each ------------------------------------------------------
expect_fail 3 'use train.loss = "binary_cross_entropy"' \
  "$NNTRAIN" "$T/ml.toml" --set train.loss='"mse"'
expect_fail 3 "4 labels per sample" \
  "$NNTRAIN" "$T/ml.toml" --set 'model.layers.1.units=3'
"$NNTRAIN" prepare csv "$T/train.csv" --label l0 --out "$T/cls" >/dev/null || fail "prepare cls"
sed -e "s#$T/d/train-\*.h5#$T/cls/train-*.h5#" -e '/^validation/d' -e '/^test/d' \
  -e '/early_stopping/,/restore_best/d' -e 's/input_shape = \[6\]/input_shape = [9]/' "$T/ml.toml" > "$T/cls.toml"
expect_fail 3 "needs multi-label data" "$NNTRAIN" "$T/cls.toml" --set 'model.layers.1.units=2'
mkdir -p "$T/reg" && cp "$T/d/val-000.h5" "$T/reg/" &&
  $PY -c "import h5py, sys; f = h5py.File(sys.argv[1], 'a'); del f.attrs['multi_label']" \
    "$T/reg/val-000.h5" || fail "strip multi_label"
expect_fail 4 "test data is not multi-label (attribute multi_label) but the training data is" \
  "$NNTRAIN" "$T/ml.toml" --set data.test="\"$T/reg/val-*.h5\""
printf 'a,b,y1,y2\n0.5,1,1,0\n0.25,2,0.5,1\n' > "$T/bad.csv"
expect_fail 4 "bad.csv:3" "$NNTRAIN" prepare csv "$T/bad.csv" --multilabel y1,y2 --out "$T/bad"
grep -qF "label column 'y1' is 0.5, expected 0 or 1" "$T/se" || fail "bad label message: $(cat "$T/se")"
expect_fail 2 "'zz' is not a column" \
  "$NNTRAIN" prepare csv "$T/bad.csv" --multilabel y1,zz --out "$T/bad"
expect_fail 2 "--multilabel excludes" \
  "$NNTRAIN" prepare csv "$T/bad.csv" --multilabel y1 --label y2 --out "$T/bad"
echo "e2e_multilabel: OK"

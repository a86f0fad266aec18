#!/usr/bin/env bash
# The HTML run report (docs/report.md), looked at as a person would: in headless Chromium
# (tests/report_browser.py, over the DevTools protocol), with a full-page screenshot.
#
# A small convnet (the CNN example job) trains on a real Fashion-MNIST subset at -np 2 and
# -np 3, with step records every 4 steps and checkpoints every 10. The report the run wrote
# itself (RUN_DIR/report.html) and the one `nntrain report` writes from the run directory
# must show: curves with as many points as metrics.jsonl has step and epoch records (the
# elements Chart.js drew, per dataset), a checkpoint-pause bar per checkpoint record, every
# chart painted; the confusion matrix with the cells `nntrain eval` prints for the final
# checkpoint; a graph node per layer (+ the input); 16 misclassified pictures that decode,
# the same samples in the run's report (gathered over the ranks) as in `nntrain report`'s
# (one process); the job file; no console error. Then the lr-find and k-fold sections, the
# switch run.report = false, and bad input: one line each, README exit codes.
# Screenshots: e2e_report-*.png in the test's working directory (not committed).
set -uo pipefail   # not -e: expect_fail runs commands that must fail
: "${NNTRAIN:?}" "${NN_SOURCE_DIR:?}"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"   # PY, fail, skip, expect_fail, fm_idx
MPI="timeout 300 mpirun --oversubscribe"
need_report_browser
SHOTS=$PWD

fm_idx train 0 1536 "$T/train" || fail "fm_idx train"
fm_idx t10k 0 512 "$T/test" || fail "fm_idx test"
"$NNTRAIN" prepare idx "$T/train-img" "$T/train-lab" --out "$T/d" --split train >/dev/null ||
  fail "prepare train"
"$NNTRAIN" prepare idx "$T/test-img" "$T/test-lab" --out "$T/d" --split test >/dev/null ||
  fail "prepare test"
J="$NN_SOURCE_DIR/jobs/fashion_mnist_cnn.toml"
S=(--set data.train="\"$T/d/train-*.h5\"" --set data.test="\"$T/d/test-*.h5\""
   --set data.cache=false --set train.epochs=3 --set train.batch_size=96
   --set run.log_every_steps=4 --set checkpoint.every_steps=10)
"$NNTRAIN" check "$J" "${S[@]}" >"$T/check" || fail "check"
LAYERS=$(grep -cE '^ *[0-9]+ +[a-z]' "$T/check")
[ "$LAYERS" -ge 8 ] || fail "check's table: $LAYERS layers?"

# look PAGE NAME: the browser's facts about a report, and its screenshot
look() {
  "$PY" "$NN_SOURCE_DIR/tests/report_browser.py" "$1" "$SHOTS/e2e_report-$2.png" >"$T/facts-$2.json" ||
    fail "the browser could not look at $1"
}

# verify NAME RUN_DIR EVAL_OUT: the facts against the run's files
verify() {
  "$PY" - "$T/facts-$1.json" "$2" "$3" "$LAYERS" "$J" <<'PY' || fail "report $1"
import json, re, sys
facts, run, evalout, layers, job = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
f = json.load(open(facts))
recs = [json.loads(l) for l in open(run + "/metrics.jsonl")]
steps = [r for r in recs if r.get("event") == "step"]
epochs = [r for r in recs if "event" not in r and "epoch" in r]
ckpts = [r for r in recs if r.get("event") == "checkpoint"]
assert f["ready"], "the page script did not finish"
assert not f["errors"] and not f["console_errors"], (f["errors"], f["console_errors"])
assert len(steps) == 3 * 16 // 4 and len(epochs) == 3 and len(ckpts) >= 4, (len(steps), len(epochs), len(ckpts))
C = f["charts"]
def drawn(chart, label):
    for d in C[chart]["datasets"]:
        if d["label"] == label:
            return d["elements"]
    raise AssertionError("%s: no dataset %r in %s" % (chart, label, C[chart]["datasets"]))
want = {("loss", "train loss (step)"): len(steps), ("loss", "train loss (epoch)"): len(epochs),
        ("loss", "test loss"): len(epochs), ("accuracy", "train accuracy (step)"): len(steps),
        ("accuracy", "test accuracy"): len(epochs), ("lr", "learning rate (step)"): len(steps),
        ("throughput", "checkpoint pause (ms)"): len(ckpts),
        ("throughput", "samples/s (epoch)"): len(epochs)}
for (chart, label), n in want.items():
    assert drawn(chart, label) == n, (chart, label, drawn(chart, label), n)
for name, c in C.items():  # every chart painted and on screen
    assert c["visible"] and c["painted"] > 0.01 * c["pixels"], (name, c["painted"], c["pixels"])
# the confusion matrix: nntrain eval's, cell for cell
rows = [l.split(":")[1].split() for l in open(evalout) if re.match(r"^\s*\d+:", l)]
cm = [[int(v) for v in r] for r in rows]
assert len(cm) == 10 and all(len(r) == 10 for r in cm), cm
assert len(f["confusion"]) == 100, len(f["confusion"])
for i, j, v in f["confusion"]:
    assert cm[i][j] == v, ("cell", i, j, v, cm[i][j])
# the graph: one node per layer and the input
assert f["graph_nodes"] == layers + 1, (f["graph_nodes"], layers)
assert f["graph_edges"] == layers, (f["graph_edges"], layers)
# the pictures: 16 that decode, each a mistake
assert f["pictures"] == 16 and f["pictures_decoded"] == 16, (f["pictures"], f["pictures_decoded"])
for c in f["captions"]:
    m = re.match(r"#(\d+): predicted (\d+), true (\d+)", c)
    assert m and m.group(2) != m.group(3), c
# the job file as the run copied it
assert f["job_text"] == open(job).read(), "job text differs"
assert f["screenshot_bytes"] > 20000, f["screenshot_bytes"]
print("%s: %d step, %d epoch, %d checkpoint records drawn; confusion = eval's (%d samples); "
      "%d graph nodes; %d pictures; no console errors" % (facts.split("facts-")[1], len(steps),
      len(epochs), len(ckpts), sum(map(sum, cm)), f["graph_nodes"], f["pictures"]))
PY
}

# captions NAME: the misclassified samples shown, one per line
captions() { "$PY" -c 'import json,sys; print("\n".join(json.load(open(sys.argv[1]))["captions"]))' "$T/facts-$1.json"; }

for np in 2 3; do
  R="$T/run$np"
  $MPI -np $np "$NNTRAIN" "$J" "${S[@]}" --set run.dir="\"$R\"" >"$T/train$np" 2>&1 ||
    { cat "$T/train$np"; fail "training at -np $np"; }
  [ -f "$R/report.html" ] || fail "-np $np: the run wrote no report.html"
  [ ! -e "$R/report.html.tmp" ] || fail "-np $np: report.html.tmp left behind"
  cmp -s "$R/job.toml" "$J" || fail "-np $np: job.toml is not a copy of the job file"
  last=$(ls "$R/checkpoints" | tail -1)
  "$NNTRAIN" eval "$R/checkpoints/$last" "$T/d/test-*.h5" >"$T/eval$np" || fail "eval -np $np"
  look "$R/report.html" "run-np$np"
  verify "run-np$np" "$R" "$T/eval$np"
  # the same run, reported afterwards from its directory (one process)
  "$NNTRAIN" report "$R" --out "$T/cli$np.html" >"$T/rep$np" || fail "nntrain report -np $np"
  grep -q "report: $T/cli$np.html" "$T/rep$np" || fail "report's line: $(cat "$T/rep$np")"
  look "$T/cli$np.html" "cli-np$np"
  verify "cli-np$np" "$R" "$T/eval$np"
  [ "$(captions "run-np$np")" = "$(captions "cli-np$np")" ] ||
    fail "-np $np: the run's misclassified samples differ from nntrain report's:
$(captions "run-np$np")
---
$(captions "cli-np$np")"
done

# the learning-rate range test, in the report of its run directory
$MPI -np 2 "$NNTRAIN" lr-find "$J" "${S[@]}" --set run.dir="\"$T/run2\"" --steps 40 >/dev/null ||
  fail "lr-find"
"$NNTRAIN" report "$T/run2" --out "$T/lrf.html" --no-eval >/dev/null || fail "report with lr-find"
look "$T/lrf.html" lrfind
"$PY" - "$T/facts-lrfind.json" "$T/run2/lr_find.jsonl" <<'PY' || fail "the lr-find plot"
import json, sys
f = json.load(open(sys.argv[1]))
n = sum(1 for _ in open(sys.argv[2]))
assert not f["errors"] and not f["console_errors"], f["console_errors"]
d = {x["label"]: x["elements"] for x in f["charts"]["lrfind"]["datasets"]}
assert d == {"loss": n, "smoothed loss": n}, (d, n)
assert "evaluation" not in f["sections"] and f["pictures"] == 0, f["sections"]  # --no-eval
print("lr-find: %d points of loss and smoothed loss drawn" % n)
PY

# k-fold: the folds' figures
$MPI -np 2 "$NNTRAIN" train "$J" "${S[@]}" --set train.epochs=1 --set data.test='""' \
  --set run.dir="\"$T/kf\"" --kfold 2 >/dev/null 2>&1 || fail "k-fold training"
"$NNTRAIN" report "$T/kf" --out "$T/kf.html" >/dev/null || fail "report of a k-fold run"
look "$T/kf.html" kfold
"$PY" - "$T/facts-kfold.json" "$T/kf/kfold.json" <<'PY' || fail "the k-fold section"
import json, sys
f, k = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
assert not f["errors"] and not f["console_errors"], f["console_errors"]
d = {x["label"]: x["elements"] for x in f["charts"]["kfold"]["datasets"]}
assert d == {"validation accuracy": 2, "validation loss": 2}, d
print("k-fold: %d folds drawn" % k["folds"])
PY

# run.report = false: no report; a missing Chart.js: one warning, training goes on
$MPI -np 2 "$NNTRAIN" "$J" "${S[@]}" --set train.epochs=1 --set run.report=false \
  --set run.dir="\"$T/off\"" >/dev/null 2>&1 || fail "run.report = false"
[ ! -e "$T/off/report.html" ] || fail "run.report = false wrote a report"
NNTRAIN_CHARTJS=$T/none.js $MPI -np 2 "$NNTRAIN" "$J" "${S[@]}" --set train.epochs=2 \
  --set run.dir="\"$T/nochart\"" >"$T/nochart.out" 2>&1 || fail "training without Chart.js"
[ "$(grep -c "warning: no run report" "$T/nochart.out")" = 1 ] ||
  fail "expected one warning: $(cat "$T/nochart.out")"
grep -q "libjs-chart.js" "$T/nochart.out" || fail "the warning does not say what to install"

# bad input: one line each, README exit codes
expect_fail 2 "missing the run directory" "$NNTRAIN" report
expect_fail 2 "unknown option" "$NNTRAIN" report "$T/run2" --bogus
expect_fail 2 "--out needs a value" "$NNTRAIN" report "$T/run2" --out
expect_fail 4 "not a run directory" "$NNTRAIN" report "$T/d"
expect_fail 4 "not a run directory" "$NNTRAIN" report "$T/nonexistent"
NNTRAIN_CHARTJS=$T/none.js expect_fail 4 "libjs-chart.js" "$NNTRAIN" report "$T/run2" --out "$T/x.html"
touch "$T/file"
expect_fail 4 "$T/file/sub.html" "$NNTRAIN" report "$T/run2" --out "$T/file/sub.html" --no-eval
head -c 4096 "$T/run2/checkpoints/$(ls "$T/run2/checkpoints" | tail -1)" >"$T/cut.h5"
expect_fail 5 "$T/cut.h5" "$NNTRAIN" report "$T/run2" --checkpoint "$T/cut.h5" --out "$T/x.html"
[ ! -e "$T/x.html" ] || fail "a failed report left a file"
echo "e2e_report: all checks passed"

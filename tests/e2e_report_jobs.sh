#!/usr/bin/env bash
# Graph, lr-find and the run report on every example job (jobs/*.toml), each on small
# real or generated data: the Fashion-MNIST jobs (MLP, CNN, ResNet, the Inception layer
# graph, autoencoder, VAE, GAN, the pretrain/finetune pair) on subsets, the text jobs on
# generated text and word lists. Each trains 2 short epochs at -np 2 (the run writes its
# report.html), runs `nntrain lr-find` (12 steps) into the same run directory and
# `nntrain report` of it; headless Chromium then looks at the report (tests/report_browser.py):
# no console error, the model graph has a node per layer and one input per replica
# (`nntrain check`'s table), the curves have as many points as metrics.jsonl has step and
# epoch records, the lr-find plot as many as lr_find.jsonl has lines, a classifier's
# confusion table k x k cells and, for image inputs, its misclassified pictures decoded.
set -uo pipefail
: "${NNTRAIN:?}" "${NN_SOURCE_DIR:?}"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"   # PY, fail, skip, fm_idx
MPI="timeout 300 mpirun --oversubscribe"
need_report_browser
SHOTS=$PWD

fm_idx train 0 512 "$T/train" || fail "fm_idx"
fm_idx train 50000 256 "$T/test" || fail "fm_idx"
"$NNTRAIN" prepare idx "$T/train-img" "$T/train-lab" --out "$T/d" --split train >/dev/null &&
  "$NNTRAIN" prepare idx "$T/test-img" "$T/test-lab" --out "$T/d" --split test \
    --stats "$T/d/train-000.h5" >/dev/null || fail "prepare idx"
"$NNTRAIN" prepare fashion-mnist --out "$T/d04" --classes 0,1,2,3,4 --limit 300 >/dev/null &&
  "$NNTRAIN" prepare fashion-mnist --out "$T/d59" --classes 5,6,7,8,9 --limit 300 >/dev/null ||
  fail "prepare fashion-mnist --classes"
# text: a generated corpus (the fortunes job: a language model), eight generated word lists
# (the word-language jobs: eight classes)
"$PY" - "$T" <<'PY' || fail "generated text"
import random, sys
T = sys.argv[1]
r = random.Random(5)
words = ["".join(r.choice("etaoinshrdlu") for _ in range(r.randint(2, 8))) for _ in range(300)]
with open(T + "/corpus.txt", "w") as f:
    for _ in range(500):
        f.write(" ".join(r.choice(words) for _ in range(r.randint(3, 9))) + ".\n")
for k in range(8):
    letters = "abcdefghijklmnopqrstuvwxyz"[k * 3:k * 3 + 6] or "xyz"
    with open("%s/lang%d.txt" % (T, k), "w") as f:
        seen = set()
        while len(seen) < 60:
            seen.add("".join(r.choice(letters) for _ in range(r.randint(3, 9))))
        f.write("\n".join(sorted(seen)) + "\n")
PY
"$NNTRAIN" prepare text "$T/corpus.txt" --out "$T/txt" >/dev/null || fail "prepare text"
"$NNTRAIN" prepare lines "$T"/lang{0..7}.txt --out "$T/wl" --per-class 60 --test-fraction 0.25 \
  --max-len 10 >/dev/null || fail "prepare lines"

fm=(--set data.train="\"$T/d/train-*.h5\"" --set data.test="\"$T/d/test-*.h5\"")
njobs=0
# every job file, the finetune job after the pretrain job whose checkpoint it starts from
jobs=$(ls "$NN_SOURCE_DIR"/jobs/*.toml | grep -v fashion_mnist_finetune; ls "$NN_SOURCE_DIR"/jobs/fashion_mnist_finetune.toml)
for jf in $jobs; do
  job=$(basename "$jf" .toml)
  case $job in
    fashion_mnist_pretrain) sets=(--set data.train="\"$T/d04/train-*.h5\"" --set data.test="\"$T/d04/test-*.h5\"") ;;
    fashion_mnist_finetune)
      pre=$(ls "$T/run_fashion_mnist_pretrain/checkpoints/"*.h5 2>/dev/null | tail -1)
      [ -n "$pre" ] || fail "finetune: the pretrain job ran first and left no checkpoint"
      sets=(--set data.train="\"$T/d59/train-*.h5\"" --set data.test="\"$T/d59/test-*.h5\""
            --set init.from="\"$pre\"") ;;
    fashion_mnist_*) sets=("${fm[@]}") ;;
    fortunes_*) sets=(--set data.train="\"$T/txt/train-*.h5\"" --set data.validation="\"$T/txt/validation-*.h5\""
                      --set train.batch_size=16 --set train.bptt=32) ;;
    wordlang_*) sets=(--set data.train="\"$T/wl/train-*.h5\"" --set data.test="\"$T/wl/test-*.h5\"") ;;
    *) fail "$job: no data for this example job in this test: add it" ;;
  esac
  R="$T/run_$job"
  sets+=(--set train.epochs=2 --set run.log_every_steps=2 --set run.dir="\"$R\"" --set data.cache=false)
  "$NNTRAIN" check "$jf" "${sets[@]}" >"$T/check_$job" || { cat "$T/check_$job"; fail "$job: check"; }
  $MPI -np 2 "$NNTRAIN" "$jf" "${sets[@]}" --steps 60 --quiet >"$T/train_$job" 2>&1 ||
    { cat "$T/train_$job"; fail "$job: training"; }
  [ -f "$R/report.html" ] || fail "$job: the run wrote no report.html"
  $MPI -np 2 "$NNTRAIN" lr-find "$jf" "${sets[@]}" --steps 12 --start 1e-5 --end 1 >"$T/lrf_$job" 2>&1 ||
    { cat "$T/lrf_$job"; fail "$job: lr-find"; }
  grep -q "suggested max lr" "$T/lrf_$job" || fail "$job: lr-find made no suggestion: $(cat "$T/lrf_$job")"
  "$NNTRAIN" report "$R" >"$T/rep_$job" 2>&1 || { cat "$T/rep_$job"; fail "$job: nntrain report"; }
  "$PY" "$NN_SOURCE_DIR/tests/report_browser.py" "$R/report.html" "$SHOTS/e2e_report_jobs-$job.png" \
    >"$T/facts_$job.json" || fail "$job: the browser"
  "$PY" - "$T/facts_$job.json" "$R" "$T/check_$job" "$job" <<'PY' || fail "$job: the report"
import json, re, sys
f = json.load(open(sys.argv[1]))
run, check, job = sys.argv[2], sys.argv[3], sys.argv[4]
assert f["ready"] and not f["errors"] and not f["console_errors"], (f["errors"], f["console_errors"])
rows = [l for l in open(check) if re.match(r"^\s*\d+\s+\S+\s+\S+\s+\[", l)]
reps = max(1, sum(1 for l in open(check) if re.match(r"^replica \S+:$", l.strip())))
assert f["graph_nodes"] == len(rows) + reps, (f["graph_nodes"], len(rows), reps)
recs = [json.loads(l) for l in open(run + "/metrics.jsonl")]
steps = [r for r in recs if r.get("event") == "step"]
epochs = [r for r in recs if "event" not in r and "epoch" in r]
assert steps and epochs, (len(steps), len(epochs))
d = {x["label"]: x["elements"] for x in f["charts"]["loss"]["datasets"]}
assert d["train loss (step)"] == len(steps) and d["train loss (epoch)"] == len(epochs), (d, len(steps), len(epochs))
lrf = sum(1 for _ in open(run + "/lr_find.jsonl"))
d = {x["label"]: x["elements"] for x in f["charts"]["lrfind"]["datasets"]}
assert d["loss"] == lrf, (d, lrf)
k = 0
if f["confusion"]:
    k = int(round(len(f["confusion"]) ** 0.5))
    assert k * k == len(f["confusion"]) and k >= 2, len(f["confusion"])
    if job.startswith("fashion_mnist"):
        assert f["pictures"] > 0 and f["pictures_decoded"] == f["pictures"], (f["pictures"], f["pictures_decoded"])
print("%s: %d graph nodes, %d step and %d epoch records drawn, %d lr-find points, "
      "confusion %dx%d, %d pictures" % (job, f["graph_nodes"], len(steps), len(epochs), lrf, k, k,
                                        f["pictures"]))
PY
  njobs=$((njobs + 1))
done
[ "$njobs" -ge 12 ] || fail "only $njobs example jobs"
echo "e2e_report_jobs: all checks passed ($njobs example jobs)"

#!/usr/bin/env bash
# The example jobs as shipped (jobs/*.toml), on a small slice of Fashion-MNIST:
# each builds, trains two short epochs on 2 ranks and its loss falls. The full
# accuracy runs are in the issue notes; this keeps the jobs working.
set -euo pipefail
: "${NNTRAIN:?}" "${NN_SOURCE_DIR:?}"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"   # PY, fail, expect_fail, fm_idx
MPI="timeout 600 mpirun --oversubscribe"

fm_idx train 0 1536 "$T/train"
fm_idx train 50000 512 "$T/test"   # held out from the train slice
"$NNTRAIN" prepare idx "$T/train-img" "$T/train-lab" --out "$T/d" --split train >/dev/null
"$NNTRAIN" prepare idx "$T/test-img" "$T/test-lab" --out "$T/d" --split test \
  --stats "$T/d/train-000.h5" >/dev/null

for job in fashion_mnist_mlp fashion_mnist_cnn fashion_mnist_resnet fashion_mnist_inception; do
  "$NNTRAIN" check "$NN_SOURCE_DIR/jobs/$job.toml" --set data.train="\"$T/d/train-*.h5\"" \
    --set data.test="\"$T/d/test-*.h5\"" > "$T/check" || { cat "$T/check"; fail "$job: check"; }
  $MPI -np 2 "$NNTRAIN" "$NN_SOURCE_DIR/jobs/$job.toml" --quiet --set train.epochs=2 \
    --set data.train="\"$T/d/train-*.h5\"" --set data.test="\"$T/d/test-*.h5\"" \
    --set run.dir="\"$T/$job\"" || fail "$job: training"
  $PY - "$T/$job/metrics.jsonl" "$job" <<'PY' || fail "$job: loss did not fall"
import json, sys
ep = [r for r in map(json.loads, open(sys.argv[1])) if "epoch" in r]
assert len(ep) == 2 and ep[1]["loss"] < ep[0]["loss"], [r["loss"] for r in ep]
assert ep[1]["test_accuracy"] > 0.2, ep[1]["test_accuracy"]  # twice chance after 24 steps
print("%s: loss %.4f -> %.4f, test accuracy %.3f" % (sys.argv[2], ep[0]["loss"], ep[1]["loss"], ep[1]["test_accuracy"]))
PY
done
echo "e2e_jobs: all checks passed"

#!/usr/bin/env bash
# e2e_augment.sh: a job with [augment] trains end to end.
#
# On 3000 Fashion-MNIST images made into shards with `nntrain prepare idx`,
# a small MLP with every transform on: the loss falls and test accuracy is far
# above chance; a repeated run is bit-identical, and 2 ranks learn what 1 rank
# learns (draws are keyed by global sample, not rank or batch position); the
# same job without [augment] ends elsewhere (augmentation really happened);
# a spatial transform on non-image data fails once, before training.
set -euo pipefail
: "${NNTRAIN:?}"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
T=$(mktemp -d /tmp/nn_e2e_augment_XXXXXX)
trap 'rm -rf "$T"' EXIT
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"   # PY, fail, expect_fail, fm_idx
need_py numpy
MPI="timeout 300 mpirun --oversubscribe"

# --- data: 3000 training images, 1000 test images, as IDX files --------------------
fm_idx train 0 3000 "$T/train"
fm_idx t10k 0 1000 "$T/test"
"$NNTRAIN" prepare idx "$T/train-img" "$T/train-lab" --out "$T/fm" --split train --shards 2 >/dev/null
"$NNTRAIN" prepare idx "$T/test-img" "$T/test-lab" --out "$T/fm" --split test \
  --stats "$T/fm/train-000.h5" >/dev/null

write_job() { # write_job FILE WITH_AUGMENT
  cat > "$1" <<EOF
[data]
train = "$T/fm/train-*.h5"
test = "$T/fm/test-*.h5"
$(mlp_model)
[train]
epochs = 3
batch_size = 50
seed = 5
[optimizer]
type = "sgd"
lr = 0.05
momentum = 0.9
[run]
dir = "$T/run"
EOF
  if [ "$2" = 1 ]; then
    cat >> "$1" <<EOF
[augment]
translate = 1
crop_padding = 2
hflip = true
rotate = 10
noise_std = 0.1
erase_prob = 0.3
erase_max_area = 0.2
EOF
  fi
}
write_job "$T/aug.toml" 1
write_job "$T/plain.toml" 0

# --- it trains: the loss falls, test accuracy far above chance ------------------------
"$NNTRAIN" "$T/aug.toml" --no-progress > "$T/out" || fail "augmented training exited $?"
$PY - "$T/run/metrics.jsonl" <<'PY' || fail "augmented training did not learn"
import json, sys
ep = [r for r in map(json.loads, open(sys.argv[1])) if "epoch" in r]
assert len(ep) == 3, ep
print("augmented: epoch losses", [round(r["loss"], 4) for r in ep],
      "test accuracy", ep[-1]["test_accuracy"])
assert ep[-1]["loss"] < ep[0]["loss"], "loss did not fall"
assert ep[0]["loss"] < 2.30, "first epoch loss not below chance level"
assert ep[-1]["test_accuracy"] > 0.6, ep[-1]
PY

# --- repeatable, rank-count independent, and different from no augmentation ----------
S="--steps 40 --quiet"
"$NNTRAIN" "$T/aug.toml" $S --set run.dir="\"$T/a1\"" --dump-params "$T/p_a1" || fail "run a1"
"$NNTRAIN" "$T/aug.toml" $S --set run.dir="\"$T/a2\"" --dump-params "$T/p_a2" || fail "run a2"
cmp -s "$T/p_a1" "$T/p_a2" || fail "two augmented runs with the same seed differ"
$MPI -np 2 "$NNTRAIN" "$T/aug.toml" $S --set run.dir="\"$T/a3\"" --dump-params "$T/p_np2" \
  --check-replicas || fail "2-rank augmented run"
"$NNTRAIN" "$T/plain.toml" $S --set run.dir="\"$T/a4\"" --dump-params "$T/p_plain" || fail "plain run"
$PY - "$T/p_a1" "$T/p_np2" "$T/p_plain" <<'PY' || fail "parameter comparison"
import sys, numpy as np
a, b, c = (np.fromfile(p, dtype=np.float32) for p in sys.argv[1:4])
assert a.size == b.size == c.size == 784*64 + 64 + 64*10 + 10, (a.size, b.size, c.size)
scale = np.abs(a).max()
r12 = np.abs(a - b).max() / scale
r0 = np.abs(a - c).max() / scale
print("np1 vs np2 with augmentation: %.3g; augmented vs plain: %.3g" % (r12, r0))
assert r12 < 1e-4, r12
assert r0 > 1e-3, r0
PY

# --- a spatial transform on non-image data: one message, no training -------------------
tiny_csv "$T/tiny.csv" 64
"$NNTRAIN" prepare csv "$T/tiny.csv" --label label --out "$T/tiny" --classes 2 >/dev/null
printf '[data]\ntrain = "%s"\n[model]\n[[model.layers]]\ntype = "dense"\nunits = 2\n[train]\nbatch_size = 16\n[run]\ndir = "%s"\n[augment]\nrotate = 5\n' \
  "$T/tiny/train-*.h5" "$T/tinyrun" > "$T/flat.toml"
set +e
"$NNTRAIN" "$T/flat.toml" >"$T/o" 2>"$T/e"; rc=$?
set -e
[ $rc -eq 3 ] || fail "rotate on [3]-shaped samples: exit $rc, want 3 (bad job)"
[ "$(wc -l <"$T/e")" -eq 1 ] || { cat "$T/e"; fail "want exactly one error line"; }
grep -q "flat.toml: .*\[augment\] rotate" "$T/e" || { cat "$T/e"; fail "error does not name the job file and [augment] rotate"; }
[ ! -s "$T/o" ] || { cat "$T/o"; fail "training started despite the error"; }
# noise alone works on any shape
sed -i 's/^rotate = 5$/noise_std = 0.1/' "$T/flat.toml"
"$NNTRAIN" "$T/flat.toml" --quiet || fail "noise_std on flat samples"

echo "e2e_augment: all checks passed"

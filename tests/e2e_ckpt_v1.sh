#!/usr/bin/env bash
# e2e_ckpt_v1.sh: a version 1 checkpoint still loads and a run resumes from
# it bit-exactly.
#
# tests/fixtures/ckpt_v1/step-000000000017.h5 was written by nntrain before
# replica groups (format version 1, commit 7792b65) running
# tests/fixtures/ckpt_v1/job.toml with `--steps 17` on the data made below
# (Fashion-MNIST train images 0..1199, one shard). Here:
#   1. inspect reads it as version 1 with one replica "model";
#   2. the uninterrupted run to the end (36 steps) and a run resumed from the
#      fixture (--resume PATH) end with byte-identical parameters, and the
#      resumed run's checkpoints are version 2;
#   3. eval reads it.
set -euo pipefail
: "${NNTRAIN:?}"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"   # PY, fail, expect_fail, fm_idx
need_py h5py numpy
FIX=$(cd "$(dirname "${BASH_SOURCE[0]}")/fixtures/ckpt_v1" && pwd)
CK=$FIX/step-000000000017.h5
cd "$T"   # the fixture's job names its data and run directory relative to here

fm_idx train 0 1200 "$T/train"
"$NNTRAIN" prepare idx "$T/train-img" "$T/train-lab" --out d --split train --shards 1 >/dev/null

# 1. inspect
"$NNTRAIN" inspect "$CK" > insp || fail "inspect rejected the v1 fixture"
for want in "nntrain-checkpoint, version 1" "(verified)" "replicas       1: model" \
            "/params/dense0/weight" "/buffers/batchnorm1/running_var" "optim_t: 17" \
            "adam, t 17" "step 17, epoch 1 (5 steps into it)"; do
  grep -qF -- "$want" insp || fail "inspect output lacks '$want':
$(cat insp)"
done
"$NNTRAIN" inspect --json "$CK" > insp.json || fail "inspect --json"
"$PY" - insp.json <<'PY' || fail "inspect --json is not the expected JSON"
import json, sys
j = json.load(open(sys.argv[1]))
assert j["version"] == 1 and j["state"]["step"] == 17 and j["state"]["optim_t"] == 17, j
r, = j["replicas"]
assert r["name"] == "model" and r["nparams"] == 4792 and r["optim_t"] == 17, r
assert r["slots"] == ["exp_avg", "exp_avg_sq"] and r["tensors"][0]["shape"] == [6, 784], r
assert j["state"]["es_best"] == "nan", j["state"]
PY

# 2. resume bit-exactly
sed 's/^dir = "run"/dir = "runA"/' "$FIX/job.toml" > a.toml
sed 's/^dir = "run"/dir = "runB"/' "$FIX/job.toml" > b.toml
"$NNTRAIN" a.toml --quiet --dump-params pA || fail "uninterrupted run"
"$NNTRAIN" b.toml --resume "$CK" --dump-params pB > outB || { cat outB; fail "resume from the v1 fixture"; }
grep -q "resuming from .*step-000000000017.h5: step 17" outB || { cat outB; fail "did not resume at 17"; }
cmp pA pB || fail "the run resumed from the v1 checkpoint differs from the uninterrupted one"
last=$(ls runB/checkpoints/step-*.h5 | sort | tail -1)
"$NNTRAIN" inspect "$last" | grep -qF "nntrain-checkpoint, version 2" || fail "$last is not version 2"
cmp runA/checkpoints/step-000000000036.h5 "$last" >/dev/null 2>&1 && fail "two runs wrote byte-identical files (created differs)"
"$PY" - runA/checkpoints/step-000000000036.h5 "$last" <<'PY' || fail "final checkpoints differ"
import sys, h5py
a, b = h5py.File(sys.argv[1], "r"), h5py.File(sys.argv[2], "r")
def tensors(f):
    out = {}
    f["replicas/model"].visititems(lambda n, o: out.__setitem__(n, o[()].tobytes()) if isinstance(o, h5py.Dataset) else None)
    return out
ta, tb = tensors(a), tensors(b)
assert ta.keys() == tb.keys() and len(ta) > 10, (ta.keys(), tb.keys())
assert all(ta[k] == tb[k] for k in ta), [k for k in ta if ta[k] != tb[k]]
assert int(b["replicas/model"].attrs["optim_t"]) == 36
PY

# 3. eval reads the v1 file
"$NNTRAIN" eval "$CK" "d/train-*.h5" > ev || { cat ev; fail "eval of the v1 fixture"; }
grep -qi "accuracy" ev || { cat ev; fail "eval output"; }
echo "e2e_ckpt_v1: ok (v1 fixture inspected, resumed bit-exactly, evaluated)"

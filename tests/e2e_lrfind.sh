#!/usr/bin/env bash
# `nntrain lr-find` (docs/training.md, "Finding the learning rate") on the MLP example job
# (with plain SGD, whose loss blows up clearly past the good rates; Adam's hovers near
# ln 10) and a real Fashion-MNIST subset: at -np 1, 2 and 3 the records (step, lr, loss,
# smoothed) agree to float rounding up to the smoothed loss's minimum, and the sweep stops
# within 3 steps of each other (past the minimum the loss is chaotic: rounding
# differences grow step by step, so where it crosses 4x is not bit-stable); the smoothed
# column is the bias-corrected moving average (beta 0.98) of the loss column, recomputed
# here; the rates grow exponentially from --start to --end; divergence (smoothed > 4x its
# minimum) stops the sweep early and a gentle sweep runs all --steps; the suggestion is
# finite and inside [start, end]; no checkpoint or metrics log appears; bad flags fail
# with one line each. Also one-cycle's momentum cycling (below).
set -uo pipefail   # not -e: expect_fail runs commands that must fail
: "${NNTRAIN:?}" "${NN_SOURCE_DIR:?}"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"   # PY, fail, skip, expect_fail, fm_idx
MPI="timeout 300 mpirun --oversubscribe"

fm_idx train 0 1536 "$T/train" || fail "fm_idx"
"$NNTRAIN" prepare idx "$T/train-img" "$T/train-lab" --out "$T/d" --split train >/dev/null ||
  fail "prepare idx"
J="$NN_SOURCE_DIR/jobs/fashion_mnist_mlp.toml"
# a global batch of 96 divides over 1, 2 and 3 ranks; 16 steps per epoch, so the
# sweep runs over several epochs of the loader
S=(--set data.train="\"$T/d/train-*.h5\"" --set data.test="\"\"" --set train.batch_size=96 \
   --set optimizer.type="\"sgd\"")

for np in 1 2 3; do
  $MPI -np $np "$NNTRAIN" lr-find "$J" "${S[@]}" --set run.dir="\"$T/np$np\"" \
    --start 1e-4 --end 100 --steps 120 >"$T/out$np" || fail "lr-find at -np $np"
  cat "$T/out$np"
  [ "$(ls "$T/np$np")" = "lr_find.jsonl" ] ||
    fail "-np $np: the run dir holds more than lr_find.jsonl: $(ls -R "$T/np$np")"
done

"$PY" - "$T" <<'PY' || fail "the records"
import json, math, re, sys
T = sys.argv[1]
recs = {n: [json.loads(l) for l in open("%s/np%d/lr_find.jsonl" % (T, n))] for n in (1, 2, 3)}
a = recs[1]
start, end, steps = 1e-4, 100.0, 120
# the sweep diverged and stopped early, at the first step whose smoothed loss passed 4x
# the minimum so far
assert 10 < len(a) < steps, len(a)
best = math.inf
for i, r in enumerate(a):
    assert r["step"] == i
    want = start * (end / start) ** (i / (steps - 1))
    assert abs(r["lr"] - want) <= 1e-6 * want, (i, r["lr"], want)
    s = r["smoothed"]
    assert s is None or s <= 4 * best or i == len(a) - 1, ("went on after diverging", i)
    if s is not None:
        best = min(best, s)
last = a[-1]["smoothed"]
assert last is None or last > 4 * best, ("stopped without diverging", last, best)
# the smoothed column: bias-corrected EMA, beta 0.98
avg = 0.0
for i, r in enumerate(a):
    if r["loss"] is None:
        break
    avg = 0.98 * avg + 0.02 * r["loss"]
    sm = avg / (1 - 0.98 ** (i + 1))
    assert abs(sm - r["smoothed"]) <= 1e-6 * abs(sm), (i, sm, r["smoothed"])
# N-invariance: the same rates; the losses agree to float rounding while the rate is
# small (the first half of the way to the smoothed minimum: rel. 1e-3; the float32
# sums' rounding differs with N and a larger rate amplifies it step by step), the
# smoothed losses to 2% up to the minimum; the stop within 3 steps
imin = min(range(len(a)), key=lambda i: a[i]["smoothed"] if a[i]["smoothed"] is not None else math.inf)
worst = worst_s = 0.0
for n in (2, 3):
    b = recs[n]
    assert abs(len(b) - len(a)) <= 3, ("np %d stopped at %d, np 1 at %d" % (n, len(b), len(a)))
    for x, y in zip(a, b):
        assert x["lr"] == y["lr"], (n, x, y)
    for x, y in zip(a[:imin // 2 + 1], b):
        worst = max(worst, abs(x["loss"] - y["loss"]) / abs(x["loss"]))
    for x, y in zip(a[:imin + 1], b):
        worst_s = max(worst_s, abs(x["smoothed"] - y["smoothed"]) / abs(x["smoothed"]))
assert worst < 1e-3, ("loss", worst)
assert worst_s < 0.02, ("smoothed", worst_s)
# the suggestion
for n in (1, 2, 3):
    out = open("%s/out%d" % (T, n)).read()
    m = re.search(r"suggested max lr: (\S+)", out)
    assert m, out
    lr = float(m.group(1))
    assert math.isfinite(lr) and start <= lr <= end, lr
print("lr-find: %d of %d steps (diverged; np 2: %d, np 3: %d), min smoothed loss %.4f at step "
      "%d, N=2,3 rel. diff: loss to step %d <= %.2g, smoothed to step %d <= %.2g; suggestion %s"
      % (len(a), steps, len(recs[2]), len(recs[3]), best, imin, imin // 2, worst, imin, worst_s,
         m.group(1)))
PY

# a gentle sweep does not diverge: every step is taken
"$NNTRAIN" lr-find "$J" "${S[@]}" --set run.dir="\"$T/gentle\"" --start 1e-5 --end 1e-2 \
  --steps 40 >"$T/outg" || fail "gentle lr-find"
[ "$(wc -l <"$T/gentle/lr_find.jsonl")" = 40 ] || fail "gentle sweep: $(wc -l <"$T/gentle/lr_find.jsonl") records, expected 40"
grep -q "stopped" "$T/outg" && fail "gentle sweep says it stopped: $(cat "$T/outg")"
grep -q "suggested max lr" "$T/outg" || fail "no suggestion: $(cat "$T/outg")"

# one-cycle cycles momentum (schedule.cycle_momentum, docs/schedules.md#one_cycle): with
# Adam (beta1) and SGD with momentum the parameters differ from cycle_momentum = false;
# with Adagrad (no momentum) and SGD without momentum they are the same bits; -np 2 and 3
# give what -np 1 gives to float rounding
OC=(--set data.train="\"$T/d/train-*.h5\"" --set data.test="\"\"" --set train.batch_size=96
    --set train.epochs=2 --set schedule.type="\"one_cycle\"" --set optimizer.lr=0.01)
oc() { # name, ranks, extra --set args...
  local name=$1 np=$2
  shift 2
  $MPI -np "$np" "$NNTRAIN" "$J" "${OC[@]}" "$@" --set run.dir="\"$T/oc_$name\"" \
    --dump-params "$T/p_$name" >/dev/null || fail "one-cycle run $name"
}
oc adam_on 1 --set optimizer.type='"adam"'
oc adam_off 1 --set optimizer.type='"adam"' --set schedule.cycle_momentum=false
oc adam_on2 2 --set optimizer.type='"adam"'
oc adam_on3 3 --set optimizer.type='"adam"'
oc sgdm_on 1 --set optimizer.type='"sgd"' --set optimizer.momentum=0.9
oc sgdm_off 1 --set optimizer.type='"sgd"' --set optimizer.momentum=0.9 --set schedule.cycle_momentum=false
oc sgd0_on 1 --set optimizer.type='"sgd"'
oc sgd0_off 1 --set optimizer.type='"sgd"' --set schedule.cycle_momentum=false
oc adagrad_on 1 --set optimizer.type='"adagrad"'
oc adagrad_off 1 --set optimizer.type='"adagrad"' --set schedule.cycle_momentum=false
cmp -s "$T/p_adam_on" "$T/p_adam_off" && fail "adam: cycle_momentum changed nothing"
cmp -s "$T/p_sgdm_on" "$T/p_sgdm_off" && fail "sgd with momentum: cycle_momentum changed nothing"
cmp -s "$T/p_sgd0_on" "$T/p_sgd0_off" || fail "sgd without momentum: cycle_momentum changed the parameters"
cmp -s "$T/p_adagrad_on" "$T/p_adagrad_off" || fail "adagrad: cycle_momentum changed the parameters"
"$PY" - "$T" <<'PY' || fail "one-cycle momentum: N-invariance"
import array, sys
T = sys.argv[1]
def load(n):
    a = array.array("f")
    a.frombytes(open("%s/p_%s" % (T, n), "rb").read())
    return a
a, off = load("adam_on"), load("adam_off")
moved = max(abs(x - y) for x, y in zip(a, off))
for n in ("adam_on2", "adam_on3"):
    b = load(n)
    d = max(abs(x - y) for x, y in zip(a, b))
    assert d < 1e-4 and d < moved / 10, (n, d, moved)
print("one-cycle momentum: adam params move up to %.3g with cycling vs without; np 2, 3 vs 1 "
      "within 1e-4" % moved)
PY

# bad flags and input: one line each, README exit codes
expect_fail 2 "--steps" "$NNTRAIN" lr-find "$J" --steps 1
expect_fail 2 "--steps" "$NNTRAIN" lr-find "$J" --steps ten
expect_fail 2 "--start" "$NNTRAIN" lr-find "$J" --start -1
expect_fail 2 "--end" "$NNTRAIN" lr-find "$J" --start 1e-3 --end 1e-4
expect_fail 2 "--end" "$NNTRAIN" lr-find "$J" --end
expect_fail 2 "unknown option" "$NNTRAIN" lr-find "$J" --bogus
expect_fail 2 "missing the job file" "$NNTRAIN" lr-find
expect_fail 3 "$T/none.toml" "$NNTRAIN" lr-find "$T/none.toml"
expect_fail 4 "no files match" "$NNTRAIN" lr-find "$J" --set data.train="\"$T/none-*.h5\"" \
  --set run.dir="\"$T/nodata\""
touch "$T/file"
expect_fail 4 "$T/file" "$NNTRAIN" lr-find "$J" "${S[@]}" --set run.dir="\"$T/file/sub\""
echo "e2e_lrfind: all checks passed"

#!/usr/bin/env bash
# e2e_lm.sh: the language-model task (train.task = "language_model", issue 12,
# docs/training.md#language-models) on a generated text stream.
#
# 1. The same job at -np 1, 2 and 3 ends with the same parameters up to the
#    ring's float rounding (N-invariant: the streams split over ranks).
# 2. A run stopped mid-epoch (--steps 130, carried LSTM state in the
#    checkpoint) and resumed at -np 2 ends with the bytes of the
#    uninterrupted -np 2 run; resumed at -np 3 it matches the -np 3 run to
#    rounding (the streams' state is gathered and handed out again by stream).
# 3. Validation reports per token: val_bits_per_token = val_loss / ln 2.
# 4. `nntrain generate` prints the prime and --length more bytes, the same
#    text for the same --seed, mostly the corpus's words.
# 5. train.accumulate: 6 streams x 2 micro-batches train as 12 streams (each
#    micro-batch's streams go on from their own state) at -np 1, 2 and 3; a
#    run stopped mid-epoch holds the 12 streams' state and resumes bitwise at
#    -np 2, to rounding at -np 3.
# 6. A supervised model or a missing train.bptt is refused with one line.
set -u
NNTRAIN=${NNTRAIN:?NNTRAIN must name the nntrain binary}
T=$(mktemp -d /tmp/nn_e2e_lm_XXXXXX)
trap 'rm -rf "$T"' EXIT
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"   # PY, fail, expect_fail
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
MPI="timeout -k 5 180 mpirun --oversubscribe"

"$PY" - "$T/corpus.txt" <<'EOF'
import random, sys
random.seed(5)
words = "the cat sat on a mat and dog ran far away from home".split()
open(sys.argv[1], "w").write(" ".join(random.choice(words) for _ in range(3000)) + "\n")
EOF
"$NNTRAIN" prepare text "$T/corpus.txt" --out "$T/s" --row-len 64 >/dev/null || fail "prepare text"
cat >"$T/lm.toml" <<EOF
name = "lm_e2e"
[data]
train = "$T/s/train-*.h5"
validation = "$T/s/validation-*.h5"
normalize = false
[model]
[[model.layers]]
type = "embedding"
num_embeddings = 257
embedding_dim = 8
[[model.layers]]
type = "lstm"
hidden_size = 16
carry = true
[[model.layers]]
type = "dense"
units = 257
per_timestep = true
[train]
task = "language_model"
bptt = 8
epochs = 2
batch_size = 6
seed = 3
clip_norm = 1.0
[optimizer]
type = "adam"
lr = 0.01
[checkpoint]
every_steps = 50
[run]
dir = "$T/run"
EOF

for np in 1 2 3; do
  rm -rf "$T/run"
  $MPI -np $np "$NNTRAIN" "$T/lm.toml" --quiet --dump-params "$T/p$np" >"$T/out" 2>&1 ||
    fail "-np $np: $(cat "$T/out")"
done
"$PY" - "$T/run/metrics.jsonl" "$T/p1" "$T/p2" "$T/p3" <<'EOF' || fail "figures"
import array, json, math, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
ep = [r for r in recs if "epoch" in r and "val_loss" in r]
assert len(ep) == 2, ep
for r in ep:
    assert abs(r["val_bits_per_token"] - r["val_loss"] / math.log(2)) < 1e-9, r
    assert 0 < r["val_accuracy"] <= 1, r
assert ep[-1]["val_loss"] < 2.0, ep[-1]   # far below ln 257 = 5.55: it learned the words
def load(p):
    a = array.array("f"); a.frombytes(open(p, "rb").read()); return a
p1, p2, p3 = (load(p) for p in sys.argv[2:])
d12 = max(abs(x - y) for x, y in zip(p1, p2))
d13 = max(abs(x - y) for x, y in zip(p1, p3))
print("max |np1 - np2| = %g, |np1 - np3| = %g" % (d12, d13))
assert len(p1) == len(p2) == len(p3) > 0 and d12 < 1e-4 and d13 < 1e-4
EOF
echo "ok: N-invariant at -np 1, 2, 3; per-token validation figures"

# stopped mid-epoch with carried state, resumed
rm -rf "$T/run"
$MPI -np 2 "$NNTRAIN" "$T/lm.toml" --quiet --steps 130 >"$T/out" 2>&1 || fail "to step 130: $(cat "$T/out")"
"$PY" -c "import h5py,sys; f=h5py.File(sys.argv[1],'r'); c=f['replicas/model/carry']; assert c.shape==(6,32), c.shape" \
  "$T/run/checkpoints/step-000000000130.h5" || fail "the checkpoint lacks the carried state [6 streams, 2 x 16]"
cp -r "$T/run" "$T/run130"
$MPI -np 2 "$NNTRAIN" "$T/lm.toml" --quiet --resume --dump-params "$T/r2" >"$T/out" 2>&1 ||
  fail "resume at -np 2: $(cat "$T/out")"
cmp -s "$T/r2" "$T/p2" || fail "resumed at -np 2: parameters differ from the uninterrupted run"
rm -rf "$T/run" && mv "$T/run130" "$T/run"
$MPI -np 3 "$NNTRAIN" "$T/lm.toml" --quiet --resume --dump-params "$T/r3" >"$T/out" 2>&1 ||
  fail "resume at -np 3: $(cat "$T/out")"
"$PY" - "$T/r3" "$T/p3" <<'EOF' || fail "resumed at -np 3: parameters"
import array, sys
def load(p):
    a = array.array("f"); a.frombytes(open(p, "rb").read()); return a
d = max(abs(x - y) for x, y in zip(load(sys.argv[1]), load(sys.argv[2])))
print("max |resumed 2->3 - np3| = %g" % d)
assert d < 1e-4
EOF
echo "ok: resumed mid-epoch with carried state: bitwise at -np 2, to rounding at -np 3"

# generate: the prime, then --length bytes; reproducible for a seed
C="$T/run/checkpoints/step-000000000472.h5"
[ -f "$C" ] || C=$(ls "$T"/run/checkpoints/*.h5 | tail -1)
"$NNTRAIN" generate "$C" --prime "the cat" --length 200 --seed 4 >"$T/g1" || fail "generate"
"$NNTRAIN" generate "$C" --prime "the cat" --length 200 --seed 4 >"$T/g2" || fail "generate again"
"$NNTRAIN" generate "$C" --prime "the cat" --length 200 --seed 5 >"$T/g3" || fail "generate, seed 5"
cmp -s "$T/g1" "$T/g2" || fail "generate: the same seed gave other text"
cmp -s "$T/g1" "$T/g3" && fail "generate: seeds 4 and 5 gave the same text"
"$PY" - "$T/g1" <<'EOF' || fail "generate: the text: $(cat "$T/g1")"
import sys
t = open(sys.argv[1], "rb").read()
assert t.startswith(b"the cat") and len(t) == 7 + 200 + 1, len(t)
words = set(b"the cat sat on a mat and dog ran far away from home".split())
got = t.split()
known = sum(w in words for w in got)
print("generated words known: %d of %d" % (known, len(got)))
assert known >= 0.4 * len(got)  # the corpus's words, often (random bytes: none)
EOF
"$NNTRAIN" generate "$C" --prime "the" --length 50 --temperature 0 >"$T/g4" || fail "generate, T 0"
expect_fail 2 "--temperature" "$NNTRAIN" generate "$C" --temperature -1
expect_fail 2 "CKPT" "$NNTRAIN" generate
expect_fail 5 "missing.h5" "$NNTRAIN" generate "$T/missing.h5"
echo "ok: generate: prime + length, reproducible, the corpus's words"

# accumulation: the optimizer batch's streams, each with its own carried state
sed 's/^batch_size = 6$/batch_size = 12/' "$T/lm.toml" >"$T/b12.toml"
sed 's/^batch_size = 6$/batch_size = 6\naccumulate = 2/' "$T/lm.toml" >"$T/a6x2.toml"
grep -q '^accumulate = 2$' "$T/a6x2.toml" || fail "no accumulate in the job"
lmrun() { # lmrun NAME NP JOB [args...]: parameters in $T/NAME, run directory $T/NAME.d
  local name=$1 np=$2 job=$3; shift 3
  $MPI -np "$np" "$NNTRAIN" "$job" --quiet --check-replicas --set "run.dir=\"$T/$name.d\"" \
    --dump-params "$T/$name" "$@" >"$T/out" 2>&1 || fail "$name at -np $np: $(cat "$T/out")"
}
for np in 1 2 3; do
  lmrun "b12n$np" $np "$T/b12.toml"
  lmrun "a6x2n$np" $np "$T/a6x2.toml"
done
lmrun a6x2stop 2 "$T/a6x2.toml" --steps 60
"$PY" -c "import h5py,sys; f=h5py.File(sys.argv[1],'r'); c=f['replicas/model/carry']; assert c.shape==(12,32), c.shape" \
  "$T/a6x2stop.d/checkpoints/step-000000000060.h5" || fail "accumulate: the checkpoint lacks the 12 streams' state"
cp -r "$T/a6x2stop.d" "$T/a6x2stop3.d"
lmrun a6x2stop 2 "$T/a6x2.toml" --resume
lmrun a6x2stop3 3 "$T/a6x2.toml" --resume
cmp -s "$T/a6x2stop" "$T/a6x2n2" || fail "accumulate: resumed at -np 2: parameters differ from the uninterrupted run"
"$PY" - "$T" <<'EOF' || fail "accumulate: parameters"
import array, sys
T = sys.argv[1]
def load(n):
    a = array.array("f"); a.frombytes(open("%s/%s" % (T, n), "rb").read()); return a
def rel(a, b):
    pa, pb = load(a), load(b)
    assert len(pa) == len(pb) > 0
    return max(abs(x - y) for x, y in zip(pa, pb)) / max(abs(y) for y in pb)
for np in (1, 2, 3):
    d = rel("a6x2n%d" % np, "b12n%d" % np)
    print("6 x 2 vs 12 streams at -np %d: max|diff|/max|p| = %.3g" % (np, d))
    assert d < 1e-5
d = rel("a6x2stop3", "a6x2n3")
print("6 x 2 stopped at -np 2, resumed at -np 3, vs -np 3: %.3g" % d)
assert d < 1e-5
d = rel("a6x2n1", "p1")
print("control: 6 x 2 vs 6 streams: %.3g" % d)
assert d > 1e-2
EOF
echo "ok: accumulation over streams: 6 x 2 = 12 at -np 1, 2, 3; resumed bitwise at -np 2"

# refusals
sed 's/^task = "language_model"$/task = "supervised"/' "$T/lm.toml" >"$T/sup.toml"
expect_fail 3 "one token stream" "$NNTRAIN" check "$T/sup.toml"
sed '/^bptt = 8$/d' "$T/lm.toml" >"$T/nobptt.toml"
expect_fail 3 "needs train.bptt" "$NNTRAIN" check "$T/nobptt.toml"
echo "e2e_lm: all checks passed"

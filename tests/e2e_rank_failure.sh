#!/usr/bin/env bash
# A rank failing alone in the middle of a run (issue 11): at -np 2 and -np 3,
# a shard row that only rank 1 reads holds a NaN feature. Every rank must
# exit 4 (README: data) with exactly one "nntrain: ..." line, naming rank 1,
# the file and the row; no MPI_ABORT banner; within seconds (no watchdog
# timeout); and the run's checkpoints must all verify, none of them at or
# after the failing step (docs/training.md, "A rank failing alone").
#
#   train  the row is in the training shards: rank 1's loader fails in the
#          middle of epoch 1 (the step loop: the failure flag of the step's
#          control all-reduce)
#   test   the row is in the test shards: rank 1 fails in the evaluation
#          after epoch 1 (the epoch's end)
#
# The training order is the epoch's permutation (core/rng.c, Philox4x32-10
# and Fisher-Yates), recomputed here to put the row in rank 1's slice of the
# global batch at both rank counts; "rank 1 (host H):" in the message checks it
# (H: MPI_Get_processor_name, the machine's hostname here).
set -uo pipefail
: "${NNTRAIN:?}"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"   # PY, fail, need_py
need_py h5py numpy
command -v mpirun >/dev/null || skip "mpirun is not installed"

B=12 SEED=7 LIMIT=${RANK_FAILURE_LIMIT:-60}
# Shards: 3 of 64 samples [1, 4, 4] float32, 2 classes; train and test sets
# alike. Prints "STEP SHARD ROW" for the training row to poison: the row of
# global sample g at position p of epoch 0's order, with p % B in {6, 7}
# (rank 1's slice at -np 2 is [6, 12), at -np 3 [4, 8)) and step p // B odd
# and >= 5 (checkpoints every 2 steps: the failing step s+1 would be one).
$PY - "$T" "$B" "$SEED" >"$T/where" <<'PY' || fail "cannot write the shards"
import sys, h5py, numpy as np
T, B, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
M = 0xFFFFFFFF
def philox(ctr, key):
    x, k = list(ctr), list(key)
    for r in range(10):
        if r:
            k = [(k[0] + 0x9E3779B9) & M, (k[1] + 0xBB67AE85) & M]
        p0, p1 = 0xD2511F53 * x[0], 0xCD9E8D57 * x[2]
        x = [(p1 >> 32) ^ x[1] ^ k[0], p1 & M, (p0 >> 32) ^ x[3] ^ k[1], p0 & M]
    return x
class Rng:  # nn_rng_init / nn_rng_u32 / nn_rng_below
    def __init__(s, seed, purpose, a):
        s.key = [seed & M, ((seed >> 32) ^ (purpose * 0x9E3779B9)) & M]
        s.ctr, s.buf = [0, a, 0, 0], []
    def u32(s):
        if not s.buf:
            s.buf = philox(s.ctr, s.key)[::-1]
            s.ctr[0] += 1
        return s.buf.pop()
    def below(s, n):
        if n <= 1: return 0
        m = s.u32() * n
        if (m & M) < n:
            t = ((1 << 32) - n) % n
            while (m & M) < t: m = s.u32() * n
        return m >> 32
def permutation(seed, epoch, n):  # nn_rng_permutation (NN_RNG_SHUFFLE = 2)
    r, p = Rng(seed, 2, epoch), list(range(n))
    for i in range(n - 1, 0, -1):
        j = r.below(i + 1)
        p[i], p[j] = p[j], p[i]
    return p
NS, PER = 3, 64
rng = np.random.default_rng(3)
def shards(kind, bad=None):
    for s in range(NS):
        x = rng.uniform(-1, 1, (PER, 1, 4, 4)).astype(np.float32)
        y = (x[:, 0, 0, :2].sum(axis=1) > 0).astype(np.int32)
        if bad is not None and bad[0] == s: x[bad[1], 0, 1, 2] = np.nan
        with h5py.File('%s/%s-%03d.h5' % (T, kind, s), 'w') as f:
            a = f.attrs
            a['format'] = 'nntrain-shard'; a['version'] = np.int32(1)
            a['sample_shape'] = np.array([1, 4, 4], np.int32)
            a['num_classes'] = np.int32(2); a['feature_scale'] = np.float64(1.0)
            a['mean'] = np.array([0.0]); a['std'] = np.array([0.58])
            a['shard_index'] = np.int32(s); a['shard_count'] = np.int32(NS)
            a['num_samples'] = np.int64(PER); a['split'] = kind
            a['source'] = 'e2e_rank_failure'
            f.create_dataset('features', data=x, chunks=(8, 1, 4, 4))
            f.create_dataset('labels', data=y)
order = permutation(seed, 0, NS * PER)
p = next(p for p in range(NS * PER) if p % B in (6, 7) and (p // B) % 2 == 1 and p // B >= 5)
g = order[p]
shards('train', (g // PER, g % PER))
shards('good')
# the test set: natural order; rank 1 reads position 7 of global batch 2
shards('test', (0, 2 * B + 7))
print(p // B, g // PER, g % PER)
PY
read -r STEP SHARD ROW <"$T/where"
mkdir "$T/tr" "$T/ok" "$T/te"
mv "$T"/train-*.h5 "$T/tr/"; mv "$T"/good-*.h5 "$T/ok/"; mv "$T"/test-*.h5 "$T/te/"

job() { # job NAME TRAIN_DIR [TEST_GLOB]
  cat >"$T/$1.toml" <<EOF2
name = "rank_failure_$1"
[data]
train = "$2/*.h5"
test = "${3:-}"
[model]
[[model.layers]]
type = "dense"
units = 16
activation = "relu"
[[model.layers]]
type = "dense"
units = 2
[train]
epochs = 3
batch_size = $B
seed = $SEED
[optimizer]
type = "sgd"
lr = 0.05
[checkpoint]
every_steps = 2
[run]
dir = "$T/run_$1"
EOF2
}

# run NP NAME: every rank's exit code in $T/codes (one line per rank).
run() {
  rm -rf "$T/run_$2" "$T/codes"
  local t0=$SECONDS
  timeout -s KILL 300 mpirun --oversubscribe -np "$1" sh -c \
    '"$0" "$@"; echo "$?" >>"'"$T"'/codes.$OMPI_COMM_WORLD_RANK"' \
    "$NNTRAIN" "$T/$2.toml" --quiet --no-progress --timeout 120 >"$T/out" 2>&1
  SECS=$((SECONDS - t0))
  cat "$T"/codes.* >"$T/codes" 2>/dev/null; rm -f "$T"/codes.*
}

# check NP NAME WHAT FILE ROW: the failure is one clean data error of rank 1.
check() {
  local np=$1 name=$2 what=$3 file=$4 row=$5
  [ "$(wc -l <"$T/codes")" = "$np" ] || fail "$what: $(wc -l <"$T/codes") ranks reported, expected $np: $(cat "$T/out")"
  [ "$(sort -u "$T/codes")" = 4 ] || fail "$what: rank exit codes $(tr '\n' ' ' <"$T/codes"), expected 4 on every rank: $(cat "$T/out")"
  grep -q "MPI_ABORT" "$T/out" && fail "$what: ended through MPI_Abort: $(cat "$T/out")"
  [ "$(grep -c '^nntrain: ' "$T/out")" = 1 ] || fail "$what: want one 'nntrain: ...' line: $(cat "$T/out")"
  grep -qF "nntrain: rank 1 (host $(hostname)): $file: /features row $row element 6 is nan" "$T/out" ||
    fail "$what: the message does not name rank 1, $file and row $row: $(cat "$T/out")"
  [ "$SECS" -le "$LIMIT" ] || fail "$what: took $SECS s (limit $LIMIT s)"
  echo "ok: $what: exit 4 on $np ranks in $SECS s: $(grep '^nntrain: ' "$T/out")"
}

# Checkpoints left by a failed run: each verifies, none at step > $1.
check_ckpts() {
  local max=$1 what=$2 c n=0
  for c in "$T/run_$3"/checkpoints/*.h5; do
    [ -e "$c" ] || continue
    n=$((n + 1))
    "$NNTRAIN" inspect "$c" >/dev/null 2>"$T/ie" || fail "$what: $c does not verify: $(cat "$T/ie")"
    local s=${c##*step-}; s=$((10#${s%.h5}))
    [ "$s" -le "$max" ] || fail "$what: checkpoint $c was written at or after the failing step"
  done
  [ "$n" -gt 0 ] || fail "$what: no checkpoint before the failure"
}

job good "$T/ok"
job train "$T/tr"
job test "$T/ok" "$T/te/*.h5"
# the same job with good data trains (so the failures are about the row)
"$NNTRAIN" "$T/good.toml" --quiet --no-progress --steps 4 >/dev/null 2>"$T/se" ||
  fail "good data: $(cat "$T/se")"

for np in 2 3; do
  run "$np" train
  check "$np" train "-np $np, NaN in rank 1's training row (step $((STEP + 1)))" \
    "$T/tr/train-$(printf %03d "$SHARD").h5" "$ROW"
  # the failing step is STEP (0-based): the last checkpoint may be of STEP
  # steps done, never of the failing one (STEP + 1)
  check_ckpts "$STEP" "-np $np train" train
  run "$np" test
  check "$np" test "-np $np, NaN in rank 1's test row (evaluation)" "$T/te/test-000.h5" $((2 * B + 7))
  check_ckpts 1000 "-np $np test" test
done
echo PASS

#!/usr/bin/env bash
# Walks README's exit-code table: for every code one command that must end
# with it (and, for the bad-input codes, one stderr line naming the file):
#   0 ok; 1 out of memory (allocation-failure injection, NN_FAULT_INJECTION
#   builds; skipped otherwise); 2 bad command line; 3 job file invalid
#   (including a TOML key holding U+0000, shown escaped); 4 data missing or
#   inconsistent (a shard with an enormous sample shape); 5 checkpoint missing
#   (--resume, eval, predict, [init] from: this used to be 4); 6 a rank stalled
#   past the watchdog (bench allreduce --stall-rank); 7 diverged (SGD with a
#   learning rate of 1e38); 75 stopped on SIGTERM after checkpointing.
set -uo pipefail
: "${NNTRAIN:?}"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
T=$(mktemp -d)
BG=
trap '[ -n "$BG" ] && kill -KILL "$BG" 2>/dev/null; rm -rf "$T"' EXIT
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"   # PY, fail, expect_fail, need_py
need_py h5py numpy

$PY - "$T" <<'PY'
import sys, h5py, numpy as np
T = sys.argv[1]
def mk(name, shape, n, data=None):
    with h5py.File(T + '/' + name + '.h5', 'w') as f:
        a = f.attrs
        a['format'] = 'nntrain-shard'; a['version'] = np.int32(1)
        a['sample_shape'] = np.array(shape, dtype=np.int32)
        a['num_classes'] = np.int32(10); a['feature_scale'] = np.float64(1.0)
        a['mean'] = np.array([0.0]); a['std'] = np.array([1.0])
        a['shard_index'] = np.int32(0); a['shard_count'] = np.int32(1)
        a['num_samples'] = np.int64(n); a['split'] = 'train'; a['source'] = 'e2e_exitcodes'
        ch = (1,) + (1,) * (len(shape) - 1) + (min(shape[-1], 1024),)
        d = f.create_dataset('features', shape=(n,) + tuple(shape), dtype='f4', chunks=ch)
        if data is not None: d[...] = data
        f.create_dataset('labels', data=np.arange(n, dtype=np.int32) % 10)
mk('ok', [1, 4, 4], 64, np.random.default_rng(1).standard_normal((64, 1, 4, 4)).astype(np.float32))
mk('huge', [1, 2147483647, 2147483647], 2)
PY

job() { # job NAME DATA EPOCHS OPTIMIZER LR
cat >"$T/$1.toml" <<EOF2
name = "x_$1"
[data]
train = "$T/$2.h5"
[model]
[[model.layers]]
type = "dense"
units = 10
[train]
epochs = $3
batch_size = 2
loss = "cross_entropy"
[optimizer]
type = "$4"
lr = $5
[run]
dir = "$T/run_$1"
EOF2
}
code() { # code WANT CMD...: CMD exits WANT
  local want=$1; shift
  "$@" >"$T/so" 2>"$T/se"; local rc=$?
  [ "$rc" = "$want" ] || fail "'$*' exited $rc, expected $want: $(tail -3 "$T/se")"
  echo "ok: exit $want: $*"
}

# 0
job ok ok 1 adam 0.001
code 0 "$NNTRAIN" check "$T/ok.toml"
code 0 "$NNTRAIN" "$T/ok.toml"
CKPT=$(ls "$T"/run_ok/checkpoints/*.h5 | tail -1)
[ -f "$CKPT" ] || fail "no checkpoint in $T/run_ok"
code 0 "$NNTRAIN" eval "$CKPT" "$T/ok.h5"

# 1: the first allocation fails (fault-injection builds only)
NN_FAIL_ALLOC=1 "$NNTRAIN" check "$T/ok.toml" >/dev/null 2>"$T/se"; rc=$?
if [ "$rc" = 0 ]; then
  echo "skipped: exit 1 (this build has no allocation-failure injection)"
else
  [ "$rc" = 1 ] || fail "NN_FAIL_ALLOC=1 check exited $rc, expected 1: $(cat "$T/se")"
  grep -q "out of memory" "$T/se" || fail "exit 1 without 'out of memory': $(cat "$T/se")"
  echo "ok: exit 1: NN_FAIL_ALLOC=1 nntrain check"
fi

# 2
expect_fail 2 "--no-such-flag" "$NNTRAIN" check "$T/ok.toml" --no-such-flag
echo "ok: exit 2: unknown flag"

# 3
sed 's/^units = 10$/unitz = 10/' "$T/ok.toml" >"$T/bad.toml"
expect_fail 3 "$T/bad.toml:7:1: unknown key 'unitz'" "$NNTRAIN" check "$T/bad.toml"
{ printf '"\\u0000" = 1\n'; cat "$T/ok.toml"; } >"$T/nul.toml"
expect_fail 3 "$T/nul.toml:1:1: unknown top-level key '\\u0000'" "$NNTRAIN" check "$T/nul.toml"
sed 's/^\[optimizer\]$/[optimizer]\n"lr\\u0000x" = 5/' "$T/ok.toml" >"$T/nul2.toml"
expect_fail 3 "unknown key 'lr\\u0000x' in [optimizer]" "$NNTRAIN" check "$T/nul2.toml"
echo "ok: exit 3: unknown key, keys holding U+0000"

# 4
expect_fail 4 "$T/nope.h5" "$NNTRAIN" eval "$CKPT" "$T/nope.h5"
job huge huge 1 adam 0.001
expect_fail 4 "$T/huge.h5: attribute 'sample_shape'" "$NNTRAIN" "$T/huge.toml"
expect_fail 4 "$T/huge.h5: attribute 'sample_shape'" "$NNTRAIN" inspect "$T/huge.h5"
echo "ok: exit 4: missing data, enormous sample shape"

# 5: a checkpoint path that does not exist, on every command that takes one
expect_fail 5 "$T/none.h5: no such file" "$NNTRAIN" eval "$T/none.h5" "$T/ok.h5"
expect_fail 5 "$T/none.h5: no such file" "$NNTRAIN" predict "$T/none.h5" "$T/ok.h5" --out "$T/p.csv"
expect_fail 5 "$T/none.h5: no such file" "$NNTRAIN" "$T/ok.toml" --resume "$T/none.h5"
expect_fail 5 "$T/none.h5" "$NNTRAIN" "$T/ok.toml" --set "init.from=$T/none.h5"
head -c 100 /dev/urandom >"$T/junk.h5"
expect_fail 5 "$T/junk.h5" "$NNTRAIN" eval "$T/junk.h5" "$T/ok.h5"
echo "ok: exit 5: missing or damaged checkpoint (eval, predict, --resume, [init] from)"

# 6: a rank stalls past the all-reduce watchdog
code 6 timeout -k 5 60 mpirun -np 2 --oversubscribe "$NNTRAIN" bench allreduce --sizes 64K \
  --iters 5 --timeout 2 --stall-rank 1

# 7: diverges
job div ok 20 sgd 1e38
code 7 "$NNTRAIN" "$T/div.toml"
grep -q "diverged" "$T/se" || fail "exit 7 without 'diverged': $(cat "$T/se")"

# 75: SIGTERM during training: checkpoint, then exit 75
job long ok 100000 adam 0.001
"$NNTRAIN" "$T/long.toml" >"$T/long.out" 2>&1 &
BG=$!
for i in $(seq 100); do grep -q "^epoch 2/" "$T/long.out" && break; sleep 0.1; done
kill -TERM "$BG"
wait "$BG"; rc=$?; BG=
[ "$rc" = 75 ] || fail "SIGTERM: exit $rc, expected 75: $(tail -3 "$T/long.out")"
grep -q "stopped on a signal" "$T/long.out" || fail "exit 75 without the stop message"
echo "ok: exit 75: SIGTERM"
echo PASS

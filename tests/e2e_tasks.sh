#!/usr/bin/env bash
# Task kinds (coordinator/run/task.h) through the test-only two-replica task
# "test_twin": replicas "a" and "b" of one model trained in alternation on
# every batch, each with its own optimizer, random streams and gradient sync.
#   - replica a follows the supervised run of the same job exactly (b's steps
#     touch nothing of a's); b starts from its own stream (different weights)
#   - replicas stay identical across ranks (--check-replicas) at -np 2 and 3
#   - an interrupted run resumes bit-exactly, both replicas, at -np 2 and 3
#   - the checkpoint holds one group per replica
set -euo pipefail
: "${NNTRAIN:?}"
. "$(dirname "$0")/lib.sh"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
MPI="timeout 300 mpirun --oversubscribe"
fm_idx train 0 2400 "$T/sub"
"$NNTRAIN" prepare idx "$T/sub-img" "$T/sub-lab" --out "$T/fm" --split train --shards 2 >/dev/null
cat > "$T/job.toml" <<EOF2
name = "twin"
[data]
train = "$T/fm/train-*.h5"
normalize = true
[model]
[[model.layers]]
type = "dense"
units = 32
activation = "relu"
[[model.layers]]
type = "dropout"
rate = 0.2
[[model.layers]]
type = "dense"
units = 10
[train]
epochs = 3
batch_size = 48
seed = 5
task = "test_twin"
[optimizer]
type = "adam"
lr = 0.002
[checkpoint]
every_epochs = 0
EOF2
P=$((784 * 32 + 32 + 32 * 10 + 10)) # floats per replica

for np in 2 3; do
  $MPI -np $np "$NNTRAIN" "$T/job.toml" --set "run.dir=\"$T/full$np\"" --steps 100 --check-replicas \
    --dump-params "$T/twin$np.bin" --no-progress --quiet || fail "twin -np $np"
  $MPI -np $np "$NNTRAIN" "$T/job.toml" --set "run.dir=\"$T/sup$np\"" --set 'train.task="supervised"' \
    --steps 100 --dump-params "$T/sup$np.bin" --no-progress --quiet || fail "supervised -np $np"
  [ "$(stat -c %s "$T/twin$np.bin")" = $((8 * P)) ] || fail "twin dump holds two replicas"
  cmp -s <(head -c $((4 * P)) "$T/twin$np.bin") "$T/sup$np.bin" ||
    fail "-np $np: replica a differs from the supervised run of the same job"
  cmp -s <(head -c $((4 * P)) "$T/twin$np.bin") <(tail -c $((4 * P)) "$T/twin$np.bin") &&
    fail "-np $np: replicas a and b are identical: b must draw its own streams"

  # interrupted at step 37 (mid-epoch), resumed to step 100
  $MPI -np $np "$NNTRAIN" "$T/job.toml" --set "run.dir=\"$T/part$np\"" --steps 37 --no-progress \
    --quiet || fail "part -np $np"
  $MPI -np $np "$NNTRAIN" "$T/job.toml" --set "run.dir=\"$T/part$np\"" --steps 100 --resume \
    --dump-params "$T/res$np.bin" --no-progress --quiet || fail "resume -np $np"
  cmp -s "$T/res$np.bin" "$T/twin$np.bin" || fail "-np $np: resumed twin run differs from the uninterrupted one"
  echo "-np $np: twin = supervised for replica a, b its own, resume bit-exact"
done

ck=$(ls "$T"/part2/checkpoints/*.h5 | tail -1)
"$NNTRAIN" inspect "$ck" >"$T/inspect" 2>&1 || fail "inspect: $(cat "$T/inspect")"
grep -q "^replicas *2: a, b" "$T/inspect" && grep -q "^replica *a:" "$T/inspect" &&
  grep -q "^replica *b:" "$T/inspect" ||
  fail "the checkpoint should list replicas a and b: $(head -20 "$T/inspect")"
echo "e2e_tasks: ok"

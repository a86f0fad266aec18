#!/usr/bin/env bash
# Allocation-failure walk (issue 11, "Memory"): for short commands (check,
# prepare idx, prepare vectors, a few training steps on one rank and on two,
# eval, encode, inspect) every allocation site the command reaches is failed once, in its own run
# (core/mem.h NN_FAIL_SITE; tests/tools/allocwalk.sh): each run must end with
# exit 1 and a one-line "nntrain: ..." message, no sanitizer report (run it in the ASan
# build: leaks count, tests/lsan.supp names Open MPI's own), no hang, no
# damaged checkpoint left behind, and no MPI_Abort: in the 2-rank runs a rank
# failing alone ends the run on both ranks, agreed (docs/training.md). Needs a -DNN_FAULT_INJECTION=ON build (skips
# otherwise). CI samples every NN_ALLOCFAIL_SAMPLE-th site (default 8);
# NN_ALLOCFAIL_SAMPLE=1 walks them all.
set -euo pipefail
: "${NNTRAIN:?}" "${NN_SOURCE_DIR:?}"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"             # PY, fail, fm_idx, mlp_model
. "$(dirname "${BASH_SOURCE[0]}")/tools/allocwalk.sh"  # walk
"$NNTRAIN" --version | grep -q "fault injection" || skip "not a -DNN_FAULT_INJECTION=ON build"
export NN_ALLOCFAIL_SAMPLE=${NN_ALLOCFAIL_SAMPLE:-8}
t_start=$SECONDS

# --- a tiny data set and job; a checkpoint to eval and inspect ----------------------
fm_idx train 0 192 "$T/sub"
"$NNTRAIN" prepare idx "$T/sub-img" "$T/sub-lab" --out "$T/fm" --split train >/dev/null
"$NNTRAIN" prepare idx "$T/sub-img" "$T/sub-lab" --out "$T/fm" --split test \
  --stats "$T/fm/train-000.h5" >/dev/null
job() { # job RUN_DIR
  cat <<EOF2
name = "allocfail"
[data]
train = "$T/fm/train-*.h5"
test = "$T/fm/test-*.h5"
$(mlp_model)
[train]
epochs = 1
batch_size = 32
seed = 7
[optimizer]
type = "sgd"
lr = 0.05
[checkpoint]
every_steps = 2
[run]
dir = "$1"
EOF2
}
job "$T/run0" > "$T/job.toml"
"$NNTRAIN" "$T/job.toml" --steps 2 --quiet || fail "reference training exited $?"
CKPT=$(ls "$T"/run0/checkpoints/*.h5 | tail -1)
[ -f "$CKPT" ] || fail "no checkpoint in $T/run0/checkpoints"

# After a failed training run: every checkpoint it left is readable.
walk_check() {
  local c
  for c in "$FAILDIR"/run/checkpoints/*.h5; do
    [ -e "$c" ] || continue
    "$NNTRAIN" inspect "$c" >/dev/null 2>&1 || { WALK_CHECK_WHY="damaged checkpoint $c"; return 1; }
  done
}

run_check() { $RUN "$NNTRAIN" check "$T/job.toml"; }
run_prepare() { $RUN "$NNTRAIN" prepare idx "$T/sub-img" "$T/sub-lab" --out "$FAILDIR" --shards 2; }
run_train1() {
  job "$FAILDIR/run" > "$FAILDIR/job.toml"
  $RUN "$NNTRAIN" "$FAILDIR/job.toml" --steps 3 --quiet
}
printf '<pad>\na\nb\nc\n' >"$T/vocab.txt"
printf '2 3\na 0.1 0.2 0.3\nzz 1 2 3\nb -0.5 0.25 1\n' >"$T/vec.txt"
run_vectors() {
  $RUN "$NNTRAIN" prepare vectors "$T/vec.txt" --vocab "$T/vocab.txt" --layer emb \
    --out "$FAILDIR/e.h5"
}
run_eval() { $RUN "$NNTRAIN" eval "$CKPT" "$T/fm/test-*.h5"; }
run_encode() {
  $RUN "$NNTRAIN" encode "$CKPT" "$T/fm/test-*.h5" --layer dense0_relu --out "$FAILDIR/codes.h5"
}
run_inspect() { $RUN "$NNTRAIN" inspect --json "$CKPT" && $RUN "$NNTRAIN" inspect "$T/fm/train-000.h5"; }
# Two ranks; the report (NN_ALLOC_REPORT) comes from rank WALK_RANK only, and
# NN_FAIL_RANK makes the failure happen there only: the other rank must not hang.
run_train2() {
  job "$FAILDIR/run" > "$FAILDIR/job.toml"
  $RUN mpirun --oversubscribe -np 2 -x NN_ALLOC_REPORT -x NN_FAIL_SITE -x NN_FAIL_FIRED \
    -x NN_FAIL_RANK -x ASAN_OPTIONS -x LSAN_OPTIONS -x UBSAN_OPTIONS sh -c \
    '[ "$OMPI_COMM_WORLD_RANK" = "'"${WALK_RANK:-0}"'" ] || unset NN_ALLOC_REPORT; exec "$0" "$@"' \
    "$NNTRAIN" "$FAILDIR/job.toml" --steps 3 --quiet
}

# Open defects found by the walk, not fixed yet: listed, not failed ("NAME:SITE"):
# none (the last, codec_write.c's tensor table warning that did not say "out of
# memory", is fixed).
WALK_OPEN=""
# Runs that may end through MPI_Abort ("NAME:SITE", with the reason): none.
# Every allocation of nntrain is agreed on; only communication failures abort.
WALK_ABORT_OK=""
walk check run_check
walk prepare run_prepare
walk vectors run_vectors
walk train1 run_train1
walk eval run_eval
walk encode run_encode
walk inspect run_inspect
WALK_MPI=1 WALK_RANK=1 walk train2_rank1 run_train2
WALK_MPI=1 WALK_RANK=0 walk train2_rank0 run_train2

echo "allocfail: $WALK_SITES sites walked ($WALK_UNREACHED not reached), $WALK_BAD bad, $WALK_ABORTS MPI_Abort," \
  "sample 1/$NN_ALLOCFAIL_SAMPLE, $((SECONDS - t_start)) s"
[ "$WALK_BAD" = 0 ] || fail "$WALK_BAD allocation failures did not end cleanly"
[ "$WALK_SITES" -gt "$WALK_UNREACHED" ] || fail "no site was reached"

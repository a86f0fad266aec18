#!/usr/bin/env bash
# e2e_chaos.sh: a small job under `mpirun -np 2` interrupted again and again,
# restarted each time with --resume-auto; its final parameters (--dump-params)
# must be byte-identical to an uninterrupted run's.
#
# 1. Ten interruptions at random moments (bash RANDOM, seeded: the seed is
#    printed; CHAOS_SEED=N repeats a run): SIGKILL to a random rank, or
#    SIGUSR1 to mpirun (the graceful path: checkpoint, exit 75).
# 2. Kills landing inside a checkpoint write, five times: the run goes to
#    step 100n (--steps), then rank 0 SIGKILLs itself at a random stage of
#    the next checkpoint's write (NN_CKPT_KILL_AT, checkpoint.h; needs a build
#    with -DNN_FAULT_INJECTION=ON, else this part is skipped and the test exits
#    77 after part 1).
set -u
NNTRAIN=${NNTRAIN:?NNTRAIN must name the nntrain binary}
T=$(mktemp -d /tmp/nn_e2e_chaos_XXXXXX)
MPIPID=
cleanup() {
  if [ -n "$MPIPID" ] && kill -0 "$MPIPID" 2>/dev/null; then kill -KILL "$MPIPID" 2>/dev/null; fi
  rm -rf "$T"
}
trap cleanup EXIT
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
export OPENBLAS_NUM_THREADS=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
NP=${CHAOS_NP:-2}
MPI="mpirun -np $NP --oversubscribe"
SEED=${CHAOS_SEED:-$(( $(date +%s) % 100000 ))}
echo "e2e_chaos: seed $SEED (CHAOS_SEED=$SEED repeats it)"
RANDOM=$SEED

fm_idx train 0 600 "$T/train"
"$NNTRAIN" prepare idx "$T/train-img" "$T/train-lab" --out "$T/d" --split train --shards 1 \
  >/dev/null || fail "prepare"
job() { # job RUN_DIR
  printf 'name = "chaos"\n[data]\ntrain = "%s/d/train-*.h5"\n' "$T"
  mlp_model
  printf '[train]\nepochs = 100\nbatch_size = 60\nseed = 3\n[optimizer]\ntype = "adam"\n'
  printf '[checkpoint]\nevery_steps = 5\nkeep = 2\n[run]\ndir = "%s"\nprogress = false\n' "$1"
}
job "$T/ref" >"$T/ref.toml"
$MPI "$NNTRAIN" "$T/ref.toml" --quiet --dump-params "$T/p_ref" >"$T/ref.out" 2>&1 ||
  fail "reference run: $(cat "$T/ref.out")"

starts() { cat "$1/metrics.jsonl" 2>/dev/null | grep -c '"event": "start"'; }

# interrupt RUN N: start run N (--resume-auto), wait for its start record, a
# random 0..0.6 s more, then SIGKILL a random rank or SIGUSR1 mpirun.
interrupt() {
  local R=$1 n=$2 i
  $MPI "$NNTRAIN" "$T/$(basename "$R").toml" --quiet --resume-auto >"$T/run$n.out" 2>&1 &
  MPIPID=$!
  for i in $(seq 600); do
    [ "$(starts "$R")" -ge "$n" ] && break
    kill -0 "$MPIPID" 2>/dev/null || break
    sleep 0.02
  done
  sleep "0.$(printf %03d $((RANDOM % 600)))"
  local what ranks=($(pgrep -P "$MPIPID"))
  if [ $((RANDOM % 2)) = 0 ] && [ ${#ranks[@]} -gt 0 ]; then
    local r=$((RANDOM % ${#ranks[@]}))
    what="SIGKILL rank pid ${ranks[$r]}"
    kill -KILL "${ranks[$r]}" 2>/dev/null
  else
    what="SIGUSR1 mpirun"
    kill -USR1 "$MPIPID" 2>/dev/null
  fi
  wait "$MPIPID"
  local rc=$?
  MPIPID=
  if [ "$what" = "SIGUSR1 mpirun" ] && [ $rc != 75 ] && [ $rc != 0 ]; then
    fail "run $n: $what: exit $rc, expected 75: $(cat "$T/run$n.out")"
  fi
  grep -q "MPI_ABORT" "$T/run$n.out" && [ "$what" = "SIGUSR1 mpirun" ] &&
    fail "run $n: MPI_ABORT banner after SIGUSR1: $(cat "$T/run$n.out")"
  echo "run $n: $what -> exit $rc, newest checkpoint: $(ls "$R/checkpoints" 2>/dev/null | tail -1)"
}

finish() { # finish RUN LABEL: run to the end, compare with the reference
  $MPI "$NNTRAIN" "$T/$(basename "$1").toml" --quiet --resume-auto --dump-params "$T/p_$2" \
    >"$T/$2.fin" 2>&1 || fail "$2: the final run failed: $(cat "$T/$2.fin")"
  cmp -s "$T/p_ref" "$T/p_$2" || fail "$2: parameters differ from the uninterrupted run (seed $SEED)"
  echo "$2: final parameters byte-identical to the uninterrupted run"
}

# --- 1. ten random interruptions ---------------------------------------------------
job "$T/chaos" >"$T/chaos.toml"
for n in $(seq 10); do interrupt "$T/chaos" "$n"; done
finish "$T/chaos" chaos

# --- 2. kills inside a checkpoint write ---------------------------------------------
if ! "$NNTRAIN" --version | grep -qF "build: fault injection"; then
  echo "e2e_chaos: part 1 ok; SKIPPED part 2: built without -DNN_FAULT_INJECTION=ON"
  exit 77
fi
job "$T/inwrite" >"$T/inwrite.toml"
stages=(data close sync verify rename dirsync prune)
for n in $(seq 5); do
  stage=${stages[$((RANDOM % ${#stages[@]}))]}
  # progress first (to step 100n, with a checkpoint there), then die inside the next write
  $MPI "$NNTRAIN" "$T/inwrite.toml" --quiet --resume-auto --steps $((n * 100)) \
    >"$T/w$n.pre" 2>&1 || fail "run to step $((n * 100)): $(cat "$T/w$n.pre")"
  $MPI -x NN_CKPT_KILL_AT=$stage "$NNTRAIN" "$T/inwrite.toml" --quiet --resume-auto \
    >"$T/w$n.out" 2>&1
  rc=$?
  [ $rc != 0 ] || fail "kill at '$stage': the run was not killed"
  for f in "$T/inwrite/checkpoints/"step-*.h5; do
    [ -e "$f" ] || continue
    "$NNTRAIN" inspect "$f" >/dev/null 2>&1 || fail "kill at '$stage': $f does not verify"
  done
  ls "$T/inwrite/checkpoints/"step-*.h5 >/dev/null 2>&1 || fail "kill at '$stage': no checkpoint left"
  echo "kill at '$stage' after step $((n * 100)) -> exit $rc, checkpoints: $(ls "$T/inwrite/checkpoints" | tr '\n' ' ')"
done
finish "$T/inwrite" inwrite
echo "e2e_chaos: ok"

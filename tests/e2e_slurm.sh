#!/usr/bin/env bash
# A real one-node Slurm cluster (slurmctld + slurmd + munged, Debian 12's
# Slurm 22.05) running jobs/slurm/train.sbatch on 2 tasks: the early-warning
# signal (scancel --signal=USR1 --batch, what --signal=B:USR1@120 sends) makes
# the batch script forward SIGUSR1 to mpirun; the ranks checkpoint and exit 75;
# the script requeues the job; the requeued job (same id, SLURM_RESTART_COUNT=1)
# resumes from the checkpoint and finishes, with final parameters
# byte-identical to an uninterrupted mpirun run.
#
# Needs root (it installs packages and runs the daemons). Without root or
# without the packages it prints "SKIPPED: reason" and exits 77 (CTest
# SKIP_RETURN_CODE). Label "slurm" only: it runs once, in the normal build.
# Every wait is bounded; daemons and temporary files go away on exit.
set -euo pipefail
: "${NNTRAIN:?}"
: "${NN_SOURCE_DIR:?}"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
skip() { echo "SKIPPED: $*"; exit 77; }
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"   # PY, fail, expect_fail, fm_idx
[ "$(id -u)" = 0 ] || skip "needs root to install and run slurmctld, slurmd and munged"

have_slurm() { command -v slurmctld && command -v slurmd && command -v sbatch && command -v munged; } >/dev/null 2>&1
if ! have_slurm; then
  export DEBIAN_FRONTEND=noninteractive
  PKGS="slurmd slurmctld slurm-client munge"
  echo "installing $PKGS"
  apt-get install -y --no-install-recommends $PKGS >/dev/null 2>&1 ||
    { apt-get update >/dev/null 2>&1 && apt-get install -y --no-install-recommends $PKGS >/dev/null 2>&1; } ||
    skip "cannot install $PKGS with apt-get"
  have_slurm || skip "slurmctld/slurmd/sbatch/munged missing after installing $PKGS"
fi

T0=$(date +%s)
D=$(mktemp -d /tmp/nn-slurm.XXXXXX)
chmod 755 "$D"
PIDS=()
JOBID=
cleanup() {
  set +e
  [ -n "$JOBID" ] && scancel "$JOBID" >/dev/null 2>&1 && sleep 1
  local p
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
  for p in "${PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null
  done
  # slurmstepd of a job we started (if a daemon died first): by pid file list
  for p in $(cat "$D"/stepd.pids 2>/dev/null); do kill -KILL "$p" 2>/dev/null; done
  rm -rf "$D"
}
trap cleanup EXIT
# wait_for SECONDS WHAT CMD...: poll CMD every 0.2 s.
wait_for() {
  local s=$1 what=$2; shift 2
  local end=$(( $(date +%s) + s ))
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$end" ] || return 1
    sleep 0.2
  done
}
show_logs() {
  local f
  for f in "$D"/slurmctld.log "$D"/slurmd.log "$D"/job.log "$D"/munged.log; do
    [ -f "$f" ] && { echo "--- $f (tail)"; tail -n 25 "$f"; }
  done
  return 0
}

# ---- munge: our own key and socket -------------------------------------------
mungekey -c -k "$D/munge.key" >/dev/null 2>&1 ||
  dd if=/dev/urandom of="$D/munge.key" bs=1024 count=1 2>/dev/null
chmod 400 "$D/munge.key"
munged -F -f --socket="$D/munge.sock" --key-file="$D/munge.key" --pid-file="$D/munged.pid" \
  --log-file="$D/munged.log" --seed-file="$D/munged.seed" 2>>"$D/munged.log" &
PIDS+=($!)
wait_for 10 munged test -S "$D/munge.sock" || { show_logs; fail "munged did not start"; }

# ---- slurm.conf and the daemons -----------------------------------------------
HOST=$(hostname -s)
CPUS=$(nproc); [ "$CPUS" -ge 2 ] || CPUS=2
mkdir -p "$D/state" "$D/spool"
BASEPORT=$(( 20000 + $$ % 20000 ))
sed -e "s|@HOST@|$HOST|g" -e "s|@DIR@|$D|g" -e "s|@CPUS@|$CPUS|g" \
    -e "s|@CTLD_PORT@|$BASEPORT|g" -e "s|@SLURMD_PORT@|$((BASEPORT + 1))|g" \
    "$NN_SOURCE_DIR/tests/slurm/slurm.conf.in" > "$D/slurm.conf"
export SLURM_CONF="$D/slurm.conf"
slurmctld -D -i -f "$SLURM_CONF" >>"$D/slurmctld.out" 2>&1 &
PIDS+=($!)
slurmd -D -f "$SLURM_CONF" >>"$D/slurmd.out" 2>&1 &
PIDS+=($!)
node_idle() { sinfo -h -N -o '%T' | grep -q '^idle'; }
wait_for 60 "the node" node_idle ||
  { sinfo -N 2>&1; cat "$D"/*.out; show_logs; fail "the node did not become idle in 60 s"; }
echo "slurm up in $(( $(date +%s) - T0 )) s: $(sinfo -h -N -o '%N %T %c cpus')"

# ---- data, job and the uninterrupted reference --------------------------------
SRC=/usr/share/datasets/fashion-mnist
fm_idx train 0 4000 "$D/sub"
"$NNTRAIN" prepare idx "$D/sub-img" "$D/sub-lab" --out "$D/d" --split train --shards 2 >/dev/null
cat > "$D/job.toml" <<TOML
name = "slurm"
[data]
train = "$D/d/train-*.h5"
$(mlp_model)
[train]
epochs = 240
batch_size = 32
seed = 11
[optimizer]
type = "adam"
lr = 0.001
[run]
dir = "$D/ref"
progress = false
TOML
timeout 120 mpirun --oversubscribe -np 2 "$NNTRAIN" "$D/job.toml" --quiet --dump-params "$D/p_ref" \
  > "$D/ref.out" 2>&1 || { cat "$D/ref.out"; fail "reference run"; }

# ---- the batch job: signal it mid-run ------------------------------------------
JOBID=$(sbatch --parsable --ntasks=2 --cpus-per-task=1 --nodes=1 --chdir="$D" \
  --output="$D/job.log" \
  --export=ALL,NNTRAIN="$NNTRAIN",NN_RUN_ROOT="$D/runs",NN_DUMP_PARAMS="$D/p_slurm" \
  "$NN_SOURCE_DIR/jobs/slurm/train.sbatch" "$D/job.toml") || { show_logs; fail "sbatch"; }
JOBID=${JOBID%%;*}
echo "submitted job $JOBID"
RUN="$D/runs/slurm-$JOBID"
started() { grep -qs '"event": "start"' "$RUN/metrics.jsonl"; }
wait_for 90 "training" started ||
  { squeue; scontrol show job "$JOBID"; show_logs; fail "job $JOBID did not start training in 90 s"; }
sleep 0.3
t0=$(date +%s%N)
scancel --signal=USR1 --batch "$JOBID" || { show_logs; fail "scancel --signal=USR1 --batch"; }
stopped() { grep -qs '"event": "stopped"' "$RUN/metrics.jsonl"; }
wait_for 30 "the checkpoint" stopped || { show_logs; fail "no stop after the signal"; }
echo "signal -> stop record: $(( ($(date +%s%N) - t0) / 1000000 )) ms"
requeued() { grep -q 'requeueing' "$D/job.log"; }
wait_for 30 "the requeue" requeued || { show_logs; fail "the script did not requeue"; }
echo "signal -> requeue: $(( ($(date +%s%N) - t0) / 1000000 )) ms"

# The requeued job runs again (same id) and finishes.
done_ok() { scontrol show job "$JOBID" 2>/dev/null | grep -q 'JobState=COMPLETED'; }
wait_for 180 "the requeued job" done_ok ||
  { scontrol show job "$JOBID"; show_logs; fail "the requeued job did not complete"; }
echo "signal -> requeued job completed: $(( ($(date +%s%N) - t0) / 1000000 )) ms"
JOBINFO=$(scontrol show job "$JOBID")
echo "$JOBINFO" | grep -q 'Restarts=1' || { echo "$JOBINFO"; fail "job $JOBID: expected Restarts=1"; }
echo "$JOBINFO" | grep -q 'ExitCode=0:0' || { echo "$JOBINFO"; fail "job $JOBID: expected ExitCode=0:0"; }

# ---- what happened, from the job's log and run directory ----------------------
LOG="$D/job.log"
grep -q "restart 0: got SIGUSR1: forwarding SIGUSR1 to mpirun" "$LOG" || { cat "$LOG"; fail "no forward"; }
grep -q "restart 0: mpirun exited 75" "$LOG" || { cat "$LOG"; fail "first run did not exit 75"; }
grep -q "nntrain: slurm job $JOBID (restart 0): 2 tasks x 1 cpu" "$LOG" || { cat "$LOG"; fail "no allocation line"; }
grep -q "nntrain: slurm job $JOBID (restart 1): 2 tasks x 1 cpu" "$LOG" ||
  { cat "$LOG"; fail "the second run does not see SLURM_RESTART_COUNT=1"; }
STEP=$(/usr/bin/python3 -c "
import json, sys
r = [json.loads(l) for l in open(sys.argv[1])]
print([x for x in r if x.get('event') == 'stopped'][-1]['step'])" "$RUN/metrics.jsonl")
grep -q "resuming from .*step-$(printf %012d "$STEP").h5" "$LOG" ||
  { cat "$LOG"; fail "the second run did not resume from the stop checkpoint (step $STEP)"; }
grep -q "restart 1: mpirun exited 0" "$LOG" || { cat "$LOG"; fail "the second run did not finish"; }
cmp "$D/p_ref" "$D/p_slurm" || fail "final parameters differ from the uninterrupted run"
echo "stopped at step $STEP, requeued, resumed, finished: parameters byte-identical to the uninterrupted run"
echo "total $(( $(date +%s) - T0 )) s"
JOBID=

# ---- srun instead of mpirun (informational: docs/slurm.md) -------------------
# Does Debian's Slurm launch Open MPI ranks directly? (PMIx v4 plugin, Open MPI
# 4.1's ext3x PMIx client.) Printed, not asserted.
echo "srun --mpi=list: $(srun --mpi=list 2>&1 | tr '\n' ' ')"
if timeout 90 srun --mpi=pmix -n 2 --cpus-per-task=1 "$NNTRAIN" "$D/job.toml" --quiet --steps 20 \
     --set "run.dir=\"$D/srun\"" > "$D/srun.out" 2>&1; then
  echo "srun --mpi=pmix -n 2 nntrain: works ($(grep -c '"event": "end"' "$D/srun/metrics.jsonl" 2>/dev/null) end record)"
else
  echo "srun --mpi=pmix -n 2 nntrain: failed:"; tail -n 5 "$D/srun.out"
fi
echo PASS

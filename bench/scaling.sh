#!/usr/bin/env bash
# scaling.sh: a job's training throughput at 1..N ranks over H simulated hosts
# (scripts/cluster.sh), with where the epoch's time goes (docs/scaling.md).
#
# usage: bench/scaling.sh JOB.toml [--hosts H] [--ranks LIST] [--rate RATE]
#                         [--epochs E] [--set KEY=VALUE]... [--json]
#   --hosts H     simulated hosts (default 4); 0 = plain mpirun on this host
#   --ranks LIST  rank counts: "1..8" (every count) or "1,2,4,8" (default 1,2,4,8)
#   --rate RATE   the hosts' link rate, tc syntax (default 1gbit; "none" unshaped)
#   --epochs E    epochs per run (default 2); with 2 or more the first is a
#                 warm-up and left out of the figures
#   --set K=V     passed to nntrain (e.g. --set train.batch_size=256)
#   --json        one JSON object per rank count instead of the table
#
# n ranks run as ceil(n/H) ranks per host on the first hosts (mpirun
# --map-by ppr:R:node); the cluster stays up for the whole sweep and is torn
# down at exit, also on error or interruption. From each run's metrics.jsonl
# epoch records (docs/training.md, "Where an epoch's time goes"), each the mean
# over the ranks:
#   samples/s   global training samples per second
#   eff         samples/s at n ranks / (n x samples/s at the first count, per rank)
#   sync_s      waiting after backward for the gradient all-reduce (sync_wait_s)
#   data_s      waiting for the loader (data_wait_s)
#   ctrl_s      control all-reduce and checkpoints (control_s)
#   compute_s   the rest of the epoch: forward, backward, optimizer
# Environment: NNTRAIN (default build/nntrain), NN_CLUSTER_SH (default
# scripts/cluster.sh beside this script).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
NNTRAIN=${NNTRAIN:-$here/build/nntrain}
CLUSTER_SH=${NN_CLUSTER_SH:-$here/scripts/cluster.sh}
PY=/usr/bin/python3

die() { echo "scaling.sh: $*" >&2; exit 2; }
[ $# -ge 1 ] || die "usage: bench/scaling.sh JOB.toml [--hosts H] [--ranks LIST] [--rate RATE] [--epochs E] [--set K=V]... [--json]"
JOB=$1; shift
[ -r "$JOB" ] || die "$JOB: cannot read the job file"
HOSTS=4 RANKS=1,2,4,8 RATE=1gbit EPOCHS=2 JSON=0
SETS=()
while [ $# -gt 0 ]; do
  case $1 in
    --hosts) HOSTS=${2:?}; shift 2 ;;
    --ranks) RANKS=${2:?}; shift 2 ;;
    --rate) RATE=${2:?}; shift 2 ;;
    --epochs) EPOCHS=${2:?}; shift 2 ;;
    --set) SETS+=(--set "${2:?}"); shift 2 ;;
    --json) JSON=1; shift ;;
    *) die "unknown argument '$1'" ;;
  esac
done
[[ $HOSTS =~ ^[0-9]+$ ]] || die "--hosts: expected a count, got '$HOSTS'"
[[ $EPOCHS =~ ^[1-9][0-9]*$ ]] || die "--epochs: expected a count >= 1, got '$EPOCHS'"
if [[ $RANKS =~ ^([0-9]+)\.\.([0-9]+)$ ]]; then
  counts=$(seq "${BASH_REMATCH[1]}" "${BASH_REMATCH[2]}")
elif [[ $RANKS =~ ^[0-9]+(,[0-9]+)*$ ]]; then
  counts=${RANKS//,/ }
else
  die "--ranks: expected 1..N or a list 1,2,4, got '$RANKS'"
fi
for n in $counts; do [ "$n" -ge 1 ] || die "--ranks: a count must be at least 1"; done

T=$(mktemp -d)
C=
cleanup() {
  [ -n "$C" ] && "$CLUSTER_SH" down --name "$C" >&2
  rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
if [ "$HOSTS" -gt 0 ]; then
  C=$("$CLUSTER_SH" up "$HOSTS" --rate "$RATE")
fi

# summarize N R: one JSON line from run N's metrics.jsonl (R ranks per host)
summarize() {
  $PY - "$T/run$1/metrics.jsonl" "$1" "$2" "$HOSTS" <<'PY'
import json, sys
path, n, r, hosts = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
ep = [e for e in map(json.loads, open(path)) if "epoch" in e and "epoch_s" in e and "event" not in e]
if not ep:
    sys.exit("scaling.sh: %s has no epoch record" % path)
use = ep[1:] if len(ep) > 1 else ep
def mean(k): return sum(e[k] for e in use) / len(use)
out = {"ranks": n, "hosts": min(hosts, -(-n // r)) if hosts else 1, "ranks_per_host": r,
       "epochs": len(use), "samples_per_s": mean("samples_per_s"), "epoch_s": mean("epoch_s"),
       "sync_s": mean("sync_wait_s"), "data_s": mean("data_wait_s"), "ctrl_s": mean("control_s")}
out["compute_s"] = out["epoch_s"] - out["sync_s"] - out["data_s"] - out["ctrl_s"]
start = [e for e in map(json.loads, open(path)) if e.get("event") == "start"]
if start and "allreduce" in start[-1]:  # the all-reduce the run used (train.allreduce as decided)
    out["allreduce"] = start[-1]["allreduce"]
    if "allreduce_chunk_bytes" in start[-1]:
        out["allreduce_chunk_bytes"] = start[-1]["allreduce_chunk_bytes"]
print(json.dumps(out))
PY
}

: >"$T/rows"
for n in $counts; do
  if [ "$HOSTS" -gt 0 ]; then
    r=$(( (n + HOSTS - 1) / HOSTS ))
    launch=("$CLUSTER_SH" run --name "$C" --ranks "$r" -- -np "$n")
  else
    r=$n
    launch=(mpirun --oversubscribe -np "$n")
  fi
  "${launch[@]}" "$NNTRAIN" "$JOB" --quiet --no-progress --set train.epochs="$EPOCHS" \
    --set run.dir="\"$T/run$n\"" "${SETS[@]}" >"$T/out$n" 2>&1 ||
    { cat "$T/out$n" >&2; die "the run at $n ranks failed"; }
  summarize "$n" "$r" >>"$T/rows"
done

$PY - "$T/rows" "$JSON" "$HOSTS" "$RATE" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
base = rows[0]["samples_per_s"] / rows[0]["ranks"]
for r in rows:
    r["efficiency"] = r["samples_per_s"] / (r["ranks"] * base)
if sys.argv[2] == "1":
    for r in rows:
        print(json.dumps(r))
    sys.exit()
hosts = int(sys.argv[3])
print("# %s; times per epoch (mean over ranks), first epoch left out when there are more"
      % ("%d simulated hosts, links %s" % (hosts, sys.argv[4]) if hosts else "one host"))
print("%5s %5s %6s %11s %6s %9s %10s %8s %8s %8s %6s" % ("ranks", "hosts", "r/host", "samples/s",
      "eff", "epoch_s", "compute_s", "sync_s", "data_s", "ctrl_s", "sync%"))
for r in rows:
    print("%5d %5d %6d %11.0f %6.2f %9.3f %10.3f %8.3f %8.3f %8.3f %5.1f%%" % (
        r["ranks"], r["hosts"], r["ranks_per_host"], r["samples_per_s"], r["efficiency"],
        r["epoch_s"], r["compute_s"], r["sync_s"], r["data_s"], r["ctrl_s"],
        100 * r["sync_s"] / r["epoch_s"] if r["epoch_s"] > 0 else 0))
PY

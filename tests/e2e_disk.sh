#!/usr/bin/env bash
# e2e_disk.sh: full, read-only and vanishing disks (issue 11, docs/checkpoints.md).
#
# 1. A checkpoint write that meets a full disk (a 1000 kB tmpfs holding one
#    checkpoint) leaves the earlier checkpoint valid and no .tmp; each failed
#    write is one warning line; the run ends with exit 4 and one line naming
#    the path (no crash: a failed HDF5 flush used to segfault at exit).
#    When space frees up, the next checkpoint is written and the run exits 0.
# 2. A read-only run directory (a read-only tmpfs) is refused at start under
#    mpirun -np 2: exit 4, one line naming the path, no MPI_ABORT banner.
# 3. A run directory removed while training (-np 2) is reported at the next
#    checkpoint and the run ends with exit 4, one line, no MPI_ABORT banner.
# 4. `prepare` on a full disk (100 kB tmpfs) exits 4 with one line and leaves
#    no shard (final name or .tmp).
# Mounting needs root (or CAP_SYS_ADMIN): without it the test exits 77.
set -u
NNTRAIN=${NNTRAIN:?NNTRAIN must name the nntrain binary}
T=$(mktemp -d /tmp/nn_e2e_disk_XXXXXX)
cleanup() {
  for m in "$T"/mnt_*; do mountpoint -q "$m" 2>/dev/null && umount "$m"; done
  rm -rf "$T"
}
trap cleanup EXIT
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
export OPENBLAS_NUM_THREADS=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
MPIRUN="mpirun -np 2 --oversubscribe"

mnt() { # mnt NAME SIZE [ro]: a small tmpfs at $T/mnt_NAME, or skip
  mkdir -p "$T/mnt_$1"
  mount -t tmpfs -o "size=$2${3:+,$3}" tmpfs "$T/mnt_$1" 2>/dev/null ||
    skip "cannot mount a tmpfs (needs root)"
}
mnt probe 16k

fm_idx train 0 300 "$T/train"
"$NNTRAIN" prepare idx "$T/train-img" "$T/train-lab" --out "$T/d" --split train --shards 1 \
  >/dev/null || fail "prepare"
job() { # job RUN_DIR EPOCHS EVERY_STEPS
  printf 'name = "disk"\n[data]\ntrain = "%s/d/train-*.h5"\n' "$T"
  mlp_model
  printf '[train]\nepochs = %d\nbatch_size = 50\nseed = 3\n[optimizer]\ntype = "adam"\n' "$2"
  printf '[checkpoint]\nevery_steps = %d\nkeep = 2\n[run]\ndir = "%s"\n' "$3" "$1"
}
no_banner() { ! grep -q "MPI_ABORT\|Segmentation\|signal" "$1" || fail "$2: $(cat "$1")"; }
errors() { grep '^nntrain: ' "$1" | grep -v '^nntrain: warning: '; }

# --- 1. full disk while checkpointing ------------------------------------------
mnt full 1000k
job "$T/mnt_full/run" 2 2 >"$T/full.toml"
"$NNTRAIN" "$T/full.toml" --quiet >"$T/full.out" 2>&1
rc=$?
[ $rc = 4 ] || fail "full disk: exit $rc, expected 4: $(cat "$T/full.out")"
no_banner "$T/full.out" "full disk"
[ "$(errors "$T/full.out" | wc -l)" = 1 ] || fail "full disk: not one error line: $(cat "$T/full.out")"
errors "$T/full.out" | grep -q "mnt_full/run/checkpoints/step-.*No space left on device" ||
  fail "full disk: the error does not name the file and ENOSPC: $(cat "$T/full.out")"
grep -q "warning: checkpoint not written, the previous one stays" "$T/full.out" ||
  fail "full disk: no warning at the failed write: $(cat "$T/full.out")"
ls "$T/mnt_full/run/checkpoints/"*.tmp >/dev/null 2>&1 && fail "full disk: a .tmp was left"
n=0
for f in "$T/mnt_full/run/checkpoints/"step-*.h5; do
  "$NNTRAIN" inspect "$f" >/dev/null 2>&1 || fail "full disk: $f does not verify"
  n=$((n + 1))
done
[ $n -ge 1 ] || fail "full disk: the first checkpoint is gone"
echo "full disk: exit 4, $n earlier checkpoint(s) valid, no .tmp"

# --- 1b. the disk frees up: the next checkpoint is written and the run ends well ----
mnt retry 2500k   # room for three checkpoints: keep = 2 and the one being written
head -c 2200000 /dev/zero >"$T/mnt_retry/filler"
job "$T/mnt_retry/run" 100 5 >"$T/retry.toml"
"$NNTRAIN" "$T/retry.toml" --quiet >"$T/retry.out" 2>&1 &
pid=$!
for _ in $(seq 600); do grep -q "warning: checkpoint not written" "$T/retry.out" && break; sleep 0.05; done
grep -q "warning: checkpoint not written" "$T/retry.out" || fail "retry: no failed write with the disk full"
rm -f "$T/mnt_retry/filler"
wait $pid
rc=$?
[ $rc = 0 ] || fail "retry: exit $rc after the disk freed up, expected 0: $(cat "$T/retry.out")"
"$NNTRAIN" inspect "$T/mnt_retry/run/checkpoints/step-000000000600.h5" >/dev/null 2>&1 ||
  fail "retry: the final checkpoint does not verify: $(ls "$T/mnt_retry/run/checkpoints")"
echo "disk freed while training: later checkpoints written, exit 0"

# --- 2. read-only run directory ---------------------------------------------------
mnt ro 64k ro
job "$T/mnt_ro/run" 1 2 >"$T/ro.toml"
$MPIRUN "$NNTRAIN" "$T/ro.toml" --quiet >"$T/ro.out" 2>&1
rc=$?
[ $rc = 4 ] || fail "read-only: exit $rc, expected 4: $(cat "$T/ro.out")"
no_banner "$T/ro.out" "read-only"
[ "$(errors "$T/ro.out" | wc -l)" = 1 ] || fail "read-only: not one error line: $(cat "$T/ro.out")"
errors "$T/ro.out" | grep -q "mnt_ro/run.*Read-only file system" ||
  fail "read-only: the error does not name the path: $(cat "$T/ro.out")"
echo "read-only run directory: exit 4 at start, one line"

# --- 3. run directory removed while training ---------------------------------------
job "$T/van" 200 2 >"$T/van.toml"
$MPIRUN "$NNTRAIN" "$T/van.toml" --quiet >"$T/van.out" 2>&1 &
pid=$!
for _ in $(seq 400); do ls "$T/van/checkpoints/"*.h5 >/dev/null 2>&1 && break; sleep 0.05; done
# Moved away in one step, then removed: rm -rf alone races the writer (a
# checkpoint directory made between rm's unlinks and its rmdir keeps it there).
mv "$T/van" "$T/van.gone" && rm -rf "$T/van.gone"
wait $pid
rc=$?
[ $rc = 4 ] || fail "vanished: exit $rc, expected 4: $(tail -5 "$T/van.out")"
no_banner "$T/van.out" "vanished"
[ "$(errors "$T/van.out" | wc -l)" = 1 ] || fail "vanished: not one error line: $(errors "$T/van.out")"
errors "$T/van.out" | grep -q "/van: the run directory is gone" ||
  fail "vanished: the error does not name the directory: $(errors "$T/van.out")"
[ -e "$T/van" ] && fail "vanished: the run directory was made anew"
echo "run directory removed while training: reported, exit 4, one line"

# --- 4. prepare on a full disk --------------------------------------------------------
mnt prep 100k
expect_fail 4 "No space left on device" \
  "$NNTRAIN" prepare idx "$T/train-img" "$T/train-lab" --out "$T/mnt_prep/d" --split train --shards 1
[ -z "$(ls -A "$T/mnt_prep/d" 2>/dev/null)" ] ||
  fail "prepare on a full disk left files: $(ls -la "$T/mnt_prep/d")"
echo "prepare on a full disk: exit 4, one line, no shard left"
echo "e2e_disk: ok"

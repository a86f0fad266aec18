# allocwalk.sh: the allocation-failure walk of tests/e2e_allocfail.sh (sourced).
#
# walk NAME FUNC     runs shell function FUNC once with NN_ALLOC_REPORT to list its allocation
#                    sites (core/mem.h), then once per site with NN_FAIL_SITE=site:
#                    the run must exit 1 (NN_ENOMEM) with one "nntrain: ..." line on
#                    stderr (rank 0's, under mpirun), and no
#                    sanitizer report, no signal, no hang (timeout), no MPI_Abort
#                    (a rank failing alone must end the run on every rank, agreed:
#                    docs/training.md, "A rank failing alone"). Sites in
#                    the report's order; with NN_ALLOCFAIL_SAMPLE=k only every
#                    k-th site (from a per-command offset), else all of them.
#                    FUNC runs its command(s) under $RUN (a timeout) and may use
#                    $FAILDIR, a fresh empty directory per run. Optional: a
#                    function walk_check NAME run after each failed run (e.g.
#                    "no damaged checkpoint"; sets WALK_CHECK_WHY on failure);
#                    WALK_MPI=1 (stderr has several ranks' lines); WALK_RANK
#                    (NN_FAIL_RANK: fail on that rank only). NN_ALLOCFAIL_ONLY="N1 N2"
#                    walks only the commands named.
# A run that ends through MPI_Abort (coordinator/train.h local_error: only a
# communication failure may) fails, unless WALK_ABORT_OK lists it as
# "NAME:SITE" (a site inside MPI itself, say; the caller says why).
# Needs $T, fail (tests/lib.sh). Totals in WALK_SITES / WALK_RUNS /
# WALK_UNREACHED / WALK_BAD / WALK_ABORTS (MPI_Abort endings, listed or not).
WALK_SITES=0 WALK_RUNS=0 WALK_UNREACHED=0 WALK_BAD=0 WALK_ABORTS=0
WALK_TIMEOUT=${WALK_TIMEOUT:-120}

RUN="timeout -s KILL $WALK_TIMEOUT"

walk() {
  local name=$1 func=$2
  case " ${NN_ALLOCFAIL_ONLY:-$name} " in *" $name "*) ;; *) return 0 ;; esac
  local rep=$T/rep.$name
  FAILDIR=$T/w.$name.ref; rm -rf "$FAILDIR"; mkdir -p "$FAILDIR"
  local rc=0
  (export NN_ALLOC_REPORT=$rep; $func) >"$T/so" 2>"$T/se" || rc=$?
  [ "$rc" = 0 ] || fail "$name: reference run exited $rc: $(head -5 "$T/se")"
  [ -s "$rep" ] || fail "$name: no allocation report"
  local sites; sites=$(tail -n +2 "$rep" | awk '{print $1}')
  local n; n=$(echo "$sites" | wc -l)
  local k=${NN_ALLOCFAIL_SAMPLE:-1} i=0 off=$(( $(echo -n "$name" | cksum | cut -d' ' -f1) % ${NN_ALLOCFAIL_SAMPLE:-1} ))
  local walked=0 t0=$SECONDS
  for site in $sites; do
    i=$((i + 1))
    [ $(( (i + off) % k )) = 0 ] || continue
    walked=$((walked + 1))
    rm -f "$T/fired"
    FAILDIR=$T/w.$name.$i; rm -rf "$FAILDIR"; mkdir -p "$FAILDIR"
    rc=0
    (export NN_FAIL_SITE=$site NN_FAIL_FIRED=$T/fired
     [ -z "${WALK_RANK:-}" ] || export NN_FAIL_RANK=$WALK_RANK
     $func) >"$T/so" 2>"$T/se" || rc=$?
    WALK_RUNS=$((WALK_RUNS + 1))
    local why=""
    if [ ! -e "$T/fired" ]; then
      WALK_UNREACHED=$((WALK_UNREACHED + 1))
      [ "$rc" = 0 ] || why="exit $rc though the site was not reached"
    elif grep -qE "Sanitizer|runtime error:" "$T/se"; then
      why="sanitizer report (exit $rc)"
    elif [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
      why="hang (killed after ${WALK_TIMEOUT}s)"
    elif [ "$rc" = 0 ] && grep -q "warning: checkpoint not written, the previous one stays; retrying" "$T/se" &&
         grep -q "out of memory" "$T/se"; then
      : # a checkpoint write that ran out of memory: warned, retried, the run completes (docs/slurm.md)
    elif grep -q "MPI_ABORT" "$T/se"; then
      WALK_ABORTS=$((WALK_ABORTS + 1))
      why="ended through MPI_Abort (a rank failing alone must be agreed on)"
      [[ " ${WALK_ABORT_OK:-} " == *" $name:$site "* ]] && { echo "abort (listed) $name site $site"; why=""; }
    elif [ "$rc" != 1 ]; then
      why="exit $rc, expected 1"
    elif ! grep -q "^nntrain: " "$T/se"; then
      why="no 'nntrain: ...' message"
    elif [ -z "${WALK_MPI:-}" ] && [ "$(wc -l <"$T/se")" != 1 ]; then
      why="$(wc -l <"$T/se") lines on stderr, expected 1"
    elif [ -n "${WALK_MPI:-}" ] && [ "$(grep -v '^nntrain: warning:' "$T/se" | grep -c '^nntrain: ')" != 1 ]; then
      why="$(grep -v '^nntrain: warning:' "$T/se" | grep -c '^nntrain: ') 'nntrain: ...' error lines, expected 1"
    elif declare -F walk_check >/dev/null && ! walk_check "$name"; then
      why="walk_check: $WALK_CHECK_WHY"
    fi
    if [ -n "$why" ] && [ "$site" = protobuf-c ] && [ "$rc" = 5 ]; then
      # protobuf-c's unpack returns NULL for bad bytes and for out of memory
      # alike: known, listed, not failed
      echo "known $name site $site: $why"
      why=""
    fi
    if [ -n "$why" ] && [[ " ${WALK_OPEN:-} " == *" $name:$site "* ]]; then
      echo "OPEN (known, not fixed yet) $name site $site: $why"   # WALK_OPEN: listed defects
      why=""
    fi
    if [ -n "$why" ]; then
      WALK_BAD=$((WALK_BAD + 1))
      echo "BAD $name site $site: $why"
      grep -E "nntrain|Sanitizer|runtime error|SUMMARY|#[0-9] " "$T/se" | head -${WALK_SHOW:-12} | sed 's/^/    /' || true
    fi
    rm -rf "$FAILDIR"
  done
  WALK_SITES=$((WALK_SITES + walked))
  echo "walk $name: $n sites, $walked walked, $((SECONDS - t0)) s"
}

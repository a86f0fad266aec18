#!/usr/bin/env bash
# The simulated cluster itself (scripts/cluster.sh) and the all-reduce across
# it: 4 hosts x 2 ranks on 1 Gbit/s links.
#   - each host has its own address in one 10.213.X.0/24 subnet, lo up, a tbf
#     on both ends of its link; mpirun places ranks 2r, 2r+1 on host r+1 and
#     MPI_Get_processor_name (tests/cluster/procname.c) and hostname name it;
#   - `nntrain bench allreduce` at -np 8 over the hosts: exit 0 (the bench
#     fails on a sum that differs between our ring and MPI_Allreduce), the
#     largest difference within 1e-5 * 8 of the values, and the traffic went
#     over the shaped links (each host's tbf counted at least the ring's bytes);
#   - a second cluster at the same time gets another subnet and names;
#   - `cluster.sh with` removes everything on SIGINT and SIGTERM, within 5 s;
#   - down is idempotent and leaves nothing (namespaces, links, processes,
#     files); addresses, links and routes outside the clusters are unchanged.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
: "${CLUSTER_PROCNAME:?set CLUSTER_PROCNAME to the built tests/cluster/procname}"

# Everything of the root namespace that is not a test cluster's.
outside() {
  { ip -o addr show; ip -o link show; ip route show; } | sed 's/  */ /g' |
    grep -vE '10\.213\.|nnc[0-9a-f]{4}-' | sort
}
outside >"$T/before"

# Bad input: one line, exit 2 (usage) or 1, and nothing made.
nets=$(ip netns list | wc -l)
expect_fail 2 "expected a host count 1-64, got '0'" "$CLUSTER_SH" up 0
expect_fail 2 "--rate 'fast': expected e.g. 100mbit" "$CLUSTER_SH" up 2 --rate fast
expect_fail 2 "cluster name 'Bad-Name': expected 1-8 of [a-z0-9]" "$CLUSTER_SH" up 2 --name Bad-Name
expect_fail 1 "cluster 'nncnone' is not up" "$CLUSTER_SH" run --name nncnone -- -np 1 true
[ "$(ip netns list | wc -l)" = "$nets" ] || fail "bad input made a namespace"
echo "ok: bad input to cluster.sh: one line, exit 2 or 1, nothing made"

cluster_up 4 1gbit
NET=$(cat "/run/nntrain-cluster/$C/subnet"); NET=${NET%.0/24}
for i in 1 2 3 4; do
  a=$("$CLUSTER_SH" exec --name "$C" "$i" ip -4 -o addr show dev eth0 | awk '{print $4}')
  [ "$a" = "$NET.$i/24" ] || fail "host $i: eth0 has '$a', expected $NET.$i/24"
  "$CLUSTER_SH" exec --name "$C" "$i" ip -o link show lo | grep -q 'UP' || fail "host $i: lo is down"
  "$CLUSTER_SH" exec --name "$C" "$i" tc qdisc show dev eth0 | grep -q 'tbf .*rate 1Gbit' ||
    fail "host $i: no 1 Gbit/s tbf on eth0 (host -> switch)"
  tc qdisc show dev "$C-$i" | grep -q 'tbf .*rate 1Gbit' || fail "host $i: no 1 Gbit/s tbf on $C-$i (switch -> host)"
  [ "$("$CLUSTER_SH" exec --name "$C" "$i" hostname)" = "$C-h$i" ] || fail "host $i: hostname is not $C-h$i"
done
echo "ok: 4 hosts $C-h1..h4 on $NET.0/24, lo up, 1 Gbit/s tbf both ways"

# Placement and names, as MPI reports them.
crun 2 -np 8 "$CLUSTER_PROCNAME" >"$T/names" 2>"$T/err" || fail "procname across the cluster: $(cat "$T/err")"
for r in 0 1 2 3 4 5 6 7; do
  grep -qx "$r 8 $C-h$((r / 2 + 1))" "$T/names" || fail "rank $r is not on $C-h$((r / 2 + 1)): $(cat "$T/names")"
done
echo "ok: MPI_Get_processor_name: ranks 0-7 on $(awk '{print $3}' "$T/names" | uniq | tr '\n' ' ')"

# The all-reduce over TCP between hosts; the tbf byte counters before and after.
sent() { "$CLUSTER_SH" exec --name "$C" "$1" tc -s qdisc show dev eth0 | awk '/Sent/ {print $2; exit}'; }
for i in 1 2 3 4; do eval "b$i=$(sent $i)"; done
crun 2 -np 8 "$NNTRAIN" bench allreduce --sizes 64K,1M --iters 3 --json >"$T/bench" 2>"$T/err" ||
  fail "bench allreduce at 4 hosts x 2 ranks: $(cat "$T/err" "$T/bench")"
$PY - "$T/bench" <<'PY' || fail "bench output: $(cat "$T/bench")"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
assert [r["bytes"] for r in rows] == [65536, 1048576], rows
for r in rows:
    assert r["ranks"] == 8, r
    # bench's buffers hold values of order 1 per rank: the sum is of order 8
    assert r["max_abs_diff"] <= 1e-5 * 8, r
    print("ok: bench allreduce %7d B at 8 ranks on 4 hosts: ring %.1f ms, MPI_Allreduce %.1f ms, max |ring - MPI| %.2g"
          % (r["bytes"], r["ring_us"] / 1e3, r["mpi_us"] / 1e3, r["max_abs_diff"]))
PY
# 5 calls of 1 MiB by the ring alone: each host sends 2 (N-1)/N of it (the
# ring crosses each host's link once per direction), MPI_Allreduce more.
min=$((5 * 1048576 * 14 / 8))
for i in 1 2 3 4; do
  eval "d=\$(( \$(sent $i) - b$i ))"
  [ "$d" -ge "$min" ] || fail "host $i sent $d bytes through its tbf, expected at least $min: not over the links?"
done
echo "ok: each host's link carried at least $min bytes"

# A second cluster alongside: its own subnet and names.
C1=$C
cluster_up 2 none
[ "$C" != "$C1" ] || fail "two clusters with one name $C"
NET2=$(cat "/run/nntrain-cluster/$C/subnet")
[ "$NET2" != "$NET.0/24" ] || fail "two clusters on one subnet $NET2"
crun 1 -np 2 hostname >"$T/h2" || fail "second cluster: mpirun"
[ "$(sort "$T/h2" | tr '\n' ' ')" = "$C-h1 $C-h2 " ] || fail "second cluster: hosts $(cat "$T/h2")"
echo "ok: a second cluster $C on $NET2 beside $C1"
cluster_down
C=$C1
cluster_down
"$CLUSTER_SH" down --name "$C1" || fail "a second down of $C1 failed (not idempotent)"

members_of() { # the commands of the processes cluster NAME started
  grep -lsxz "NN_CLUSTER_MEMBER=$1" /proc/[0-9]*/environ | cut -d/ -f3 |
    while read -r p; do cat "/proc/$p/comm" 2>/dev/null; done
}
# `with`, interrupted: a job that would sleep 100 s; the signal's default
# disposition restored (a background job of a script starts with SIGINT ignored).
for sig in INT TERM; do
  name=nnct$(od -An -N2 -tx2 /dev/urandom | tr -d ' ')
  env --default-signal=INT "$CLUSTER_SH" with 2 --name "$name" --ranks 1 -- -np 2 sleep 100 >/dev/null 2>&1 &
  MPIPID=$!
  for _ in $(seq 100); do [ "$(members_of "$name" | grep -cx sleep)" = 2 ] && break; sleep 0.1; done
  [ "$(members_of "$name" | grep -cx sleep)" = 2 ] || fail "with: the job did not start on cluster $name in 10 s"
  t0=$(date +%s%N)
  kill -"$sig" "$MPIPID"
  rc=0; wait "$MPIPID" || rc=$?
  ms=$(( ($(date +%s%N) - t0) / 1000000 ))
  MPIPID=
  [ "$rc" = $((128 + $(kill -l "$sig"))) ] || fail "with: exit $rc after SIG$sig"
  [ "$ms" -le 5000 ] || fail "with: $ms ms to tear down after SIG$sig"
  "$CLUSTER_SH" check --name "$name" || fail "with: left something after SIG$sig"
  echo "ok: cluster.sh with: SIG$sig -> exit $rc, all removed in $ms ms"
done

# `up`, interrupted while it makes 16 hosts (about 0.8 s): removes what it made.
name=nnct$(od -An -N2 -tx2 /dev/urandom | tr -d ' ')
env --default-signal=INT "$CLUSTER_SH" up 16 --name "$name" >/dev/null 2>&1 &
MPIPID=$!
for _ in $(seq 200); do [ "$(ip netns list | grep -c "^$name-h")" -ge 2 ] && break; sleep 0.01; done
kill -TERM "$MPIPID" 2>/dev/null
rc=0; wait "$MPIPID" || rc=$?
MPIPID=
if [ "$rc" = 0 ]; then
  echo "note: up 16 finished before SIGTERM; not checked"
  "$CLUSTER_SH" down --name "$name" || fail "down $name"
else
  [ "$rc" = 143 ] || fail "up interrupted by SIGTERM: exit $rc, expected 143"
  "$CLUSTER_SH" check --name "$name" || fail "up interrupted by SIGTERM left something"
  echo "ok: cluster.sh up 16, SIGTERM after 2+ hosts: exit 143, nothing left"
fi

outside >"$T/after"
diff "$T/before" "$T/after" >&2 || fail "addresses, links or routes outside the clusters changed"
echo "ok: nothing outside the clusters' subnets changed"
echo PASS

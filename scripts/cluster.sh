#!/usr/bin/env bash
# cluster.sh: a simulated cluster on this one machine, for tests and benchmarks
# that must cross real TCP links between "hosts" (issue 16; docs/scaling.md).
#
# Each host is a Linux network namespace NAME-hI with its own veth link to a
# private bridge NAME-br, its own address 10.213.X.I/24 and (through the rsh
# agent) its own hostname NAME-hI in a UTS namespace, so MPI_Get_processor_name
# and Open MPI's messages name the simulated host. Each link is rate-limited
# with tc tbf at both ends of its veth pair (host -> switch and switch -> host).
# mpirun itself stays in the root namespace and reaches its daemons over the
# bridge's own address 10.213.X.254; Open MPI's rsh launcher starts one orted
# per host through the agent script, which enters the host's namespaces.
#
# What it is not: no latency or loss emulation (this kernel's tc has no netem),
# no separate file systems or PID namespaces (the hosts share /tmp, the disk and
# the two cores), and nothing outside its own subnet, links and namespaces is
# touched: it never changes another address, route or link.
#
# usage:
#   cluster.sh up K [--rate RATE] [--name NAME]   make K hosts; prints NAME
#   cluster.sh run [--name NAME] [--ranks R] -- MPIRUN-ARGS...
#                                      mpirun across the hosts, R ranks per host
#   cluster.sh exec [--name NAME] I CMD...   run CMD on host I (1..K)
#   cluster.sh hosts [--name NAME]           the host names, one a line
#   cluster.sh down [--name NAME]            remove everything NAME made
#                                            (idempotent, also after a crash)
#   cluster.sh check [--name NAME]           exit 1, listing it, if anything
#                                            of NAME is left
#   cluster.sh probe                         exit 0 if clusters can run here,
#                                            else 77 with the reason
#   cluster.sh with K [--rate RATE] [--name NAME] [--ranks R] -- MPIRUN-ARGS...
#                                      up, run, down in one (down also on error,
#                                      SIGINT and SIGTERM); exits with mpirun's code
#
# NAME defaults to $NN_CLUSTER; up picks a fresh "nncXXXX" unless --name is
# given (1-8 of [a-z0-9]), so parallel tests do not collide. RATE is tc's
# syntax (100mbit, 1gbit) or "none" (unshaped); default 1gbit. The subnet
# 10.213.X.0/24 is the lowest X (1-250) that no other cluster holds and no
# address or route on this machine uses. State lives in $NN_CLUSTER_STATE
# (default /run/nntrain-cluster/NAME): hostfile, agent, hosts.
#
# Needs root, iproute2 (ip netns, tc with tbf), util-linux (unshare, flock)
# and Open MPI. Exit codes: 0 ok, 1 failure, 2 usage, 77 cannot run here
# (not root, no network namespaces, no tbf): tests turn 77 into a skip.
set -euo pipefail

STATE_ROOT=${NN_CLUSTER_STATE:-/run/nntrain-cluster}
SELF=$(readlink -f "${BASH_SOURCE[0]}")

die() { echo "cluster.sh: $*" >&2; exit 1; }
usage() { echo "cluster.sh: $* (cluster.sh --help)" >&2; exit 2; }
cannot() { echo "cluster.sh: cannot run here: $*" >&2; exit 77; }

# can_run: root, ip netns and tc tbf work (exit 77 with the reason if not).
can_run() {
  [ "$(id -u)" = 0 ] || cannot "not root (network namespaces need root)"
  command -v ip >/dev/null || cannot "no 'ip' command (apt-get install iproute2)"
  command -v tc >/dev/null || cannot "no 'tc' command (apt-get install iproute2)"
  command -v unshare >/dev/null || cannot "no 'unshare' command (apt-get install util-linux)"
  command -v mpirun >/dev/null || cannot "no mpirun (apt-get install openmpi-bin)"
  ip netns list >/dev/null 2>&1 || cannot "'ip netns' does not work here"
}

# rate_bps RATE: tc's rate syntax in bits per second.
rate_bps() {
  local r=${1,,} n u
  [[ $r =~ ^([0-9]+)(bit|kbit|mbit|gbit)$ ]] || return 1
  n=${BASH_REMATCH[1]} u=${BASH_REMATCH[2]}
  case $u in
    bit) echo "$n" ;;
    kbit) echo $((n * 1000)) ;;
    mbit) echo $((n * 1000000)) ;;
    gbit) echo $((n * 1000000000)) ;;
  esac
}

# ---- state -------------------------------------------------------------------
NAME=${NN_CLUSTER:-}
state() { echo "$STATE_ROOT/$NAME"; }
need_name() {
  [ -n "$NAME" ] || usage "no cluster named: give --name NAME or set NN_CLUSTER"
  [[ $NAME =~ ^[a-z0-9]{1,8}$ ]] || usage "cluster name '$NAME': expected 1-8 of [a-z0-9]"
}
need_up() {
  need_name
  [ -f "$(state)/hosts" ] || die "cluster '$NAME' is not up (no $(state)/hosts)"
}

# ---- up ----------------------------------------------------------------------
# pick_subnet: the lowest X in 1..250 free for 10.213.X.0/24 (run under the lock).
pick_subnet() {
  local x used
  used=$(cat "$STATE_ROOT"/*/subnet 2>/dev/null || true)
  for x in $(seq 1 250); do
    grep -qx "10.213.$x.0/24" <<<"$used" && continue
    [ -n "$(ip -4 -o addr show to "10.213.$x.0/24")" ] && continue
    [ -n "$(ip -4 route show to match "10.213.$x.1" | grep -v '^default')" ] && continue
    echo "10.213.$x.0/24"; return 0
  done
  return 1
}

# shape DEV [NETNS]: tbf on DEV's egress at $RATE (nothing for "none").
shape() {
  [ "$RATE" = none ] && return 0
  local bps burst
  bps=$(rate_bps "$RATE")
  burst=$((bps / 8 / 1000))              # 1 ms at the rate
  [ "$burst" -ge 65536 ] || burst=65536   # at least one GSO packet
  ${2:+ip netns exec "$2"} tc qdisc add dev "$1" root tbf rate "$RATE" burst "$burst" latency 20ms ||
    cannot "tc cannot add a tbf qdisc (kernel without sch_tbf?)"
}

# add_host I NET: namespace NAME-hI, its veth link eth0 = NET.I/24 to the bridge,
# loopback up, tbf both ways; its lines in STATE/hosts (name, address, netns
# inode) and STATE/hostfile.
add_host() {
  local i=$1 net=$2 s h=$NAME-h$1
  s=$(state)
  ip netns add "$h"
  echo "$h $net.$i $(stat -L -c %i "/run/netns/$h")" >>"$s/hosts"
  ip link add "$NAME-$i" type veth peer name eth0 netns "$h"
  ip link set "$NAME-$i" master "$NAME-br" up
  ip -n "$h" link set lo up
  ip -n "$h" addr add "$net.$i/24" dev eth0
  ip -n "$h" link set eth0 up
  shape "$NAME-$i"
  shape eth0 "$h"
  echo "$h slots=2" >>"$s/hostfile"
}

# write_agent: the rsh agent STATE/agent. mpirun runs it as
# "AGENT [OPTIONS] HOST COMMAND..."; it enters HOST's network namespace and a
# new UTS namespace named HOST, and marks every process below with
# NN_CLUSTER_MEMBER (how down finds stragglers).
write_agent() {
  local s
  s=$(state)
  cat >"$s/agent" <<EOF
#!/bin/sh
while [ \$# -gt 0 ]; do case \$1 in -*) shift ;; *) break ;; esac; done
host=\$1; shift
case \$host in $NAME-h[0-9]*) ;; *) echo "cluster agent: unknown host '\$host'" >&2; exit 255 ;; esac
NN_CLUSTER_MEMBER=$NAME; export NN_CLUSTER_MEMBER
exec ip netns exec "\$host" unshare --uts sh -c 'hostname "\$0" && exec sh -c "\$1"' "\$host" "\$*"
EOF
  chmod +x "$s/agent"
}

cmd_up() {
  local k=${1:-}; shift || true
  RATE=1gbit
  while [ $# -gt 0 ]; do
    case $1 in
      --rate) RATE=${2:?--rate needs a value}; shift 2 ;;
      --name) NAME=${2:?--name needs a value}; shift 2 ;;
      *) usage "up: unknown argument '$1'" ;;
    esac
  done
  [[ $k =~ ^[0-9]+$ ]] && [ "$k" -ge 1 ] && [ "$k" -le 64 ] || usage "up: expected a host count 1-64, got '$k'"
  [ "$RATE" = none ] || rate_bps "$RATE" >/dev/null || usage "up: --rate '$RATE': expected e.g. 100mbit, 1gbit or none"
  can_run
  [ -n "$NAME" ] || NAME=nnc$(od -An -N2 -tx2 /dev/urandom | tr -d ' ')
  need_name
  mkdir -p "$STATE_ROOT"
  local subnet s i
  s=$(state)
  exec 9>"$STATE_ROOT/lock"
  flock 9
  [ -e "$s" ] && die "cluster '$NAME' exists ($s); 'cluster.sh down --name $NAME' first"
  ip netns list | grep -q "^$NAME-h" && die "namespaces $NAME-h* exist; 'cluster.sh down --name $NAME' first"
  subnet=$(pick_subnet) || die "no free subnet in 10.213.1-250.0/24"
  mkdir -p "$s"
  echo "$subnet" >"$s/subnet"
  for i in $(seq 1 "$k"); do mkdir -p "/etc/netns/$NAME-h$i"; done  # (down removes an empty /etc/netns under the lock)
  flock -u 9
  # From here on, anything that fails or interrupts removes what was made.
  trap 'trap - EXIT INT TERM; cmd_down >/dev/null 2>&1 || true; exit 130' INT
  trap 'trap - EXIT INT TERM; cmd_down >/dev/null 2>&1 || true; exit 143' TERM
  trap 'rc=$?; trap - EXIT INT TERM; [ $rc = 0 ] || cmd_down >/dev/null 2>&1 || true; exit $rc' EXIT
  local net=${subnet%.0/24} br=$NAME-br
  echo "$RATE" >"$s/rate"
  ip link add "$br" type bridge
  ip addr add "$net.254/24" dev "$br"
  ip link set "$br" up
  : >"$s/hostfile"; : >"$s/hosts"
  for i in $(seq 1 "$k"); do add_host "$i" "$net"; done
  # Each host resolves every host's name (ip netns exec mounts /etc/netns/H/hosts
  # over /etc/hosts for the processes it starts; nothing global changes).
  for i in $(seq 1 "$k"); do
    { echo "127.0.0.1 localhost"; awk '{print $2, $1}' "$s/hosts"; echo "$net.254 $NAME-br"; } \
      >"/etc/netns/$NAME-h$i/hosts"
  done
  write_agent
  trap - EXIT INT TERM
  echo "$NAME"
}

# ---- run / exec --------------------------------------------------------------
# mpirun_args R: the launch options for R ranks per host (one a line).
mpirun_args() {
  local s subnet
  s=$(state); subnet=$(cat "$s/subnet")
  printf '%s\n' --hostfile "$s/hostfile" \
    --mca plm_rsh_agent "$s/agent" --mca plm_rsh_no_tree_spawn 1 \
    --mca btl tcp,self,vader --mca btl_tcp_if_include "$subnet" \
    --mca oob_tcp_if_include "$subnet" --map-by "ppr:$1:node" --oversubscribe
}

cmd_run() {
  local r=1
  while [ $# -gt 0 ]; do
    case $1 in
      --name) NAME=${2:?}; shift 2 ;;
      --ranks) r=${2:?}; shift 2 ;;
      --) shift; break ;;
      *) usage "run: unknown argument '$1' (mpirun's arguments go after --)" ;;
    esac
  done
  [[ $r =~ ^[0-9]+$ ]] && [ "$r" -ge 1 ] || usage "run: --ranks: expected a count, got '$r'"
  need_up
  local -a a
  mapfile -t a < <(mpirun_args "$r")
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
  exec mpirun "${a[@]}" "$@"
}

cmd_exec() {
  while [ $# -gt 0 ]; do
    case $1 in
      --name) NAME=${2:?}; shift 2 ;;
      *) break ;;
    esac
  done
  need_up
  local i=${1:-}; shift || true
  [[ $i =~ ^[0-9]+$ ]] && grep -q "^$NAME-h$i " "$(state)/hosts" || usage "exec: no host '$i' in cluster '$NAME'"
  [ $# -gt 0 ] || usage "exec: no command"
  NN_CLUSTER_MEMBER=$NAME exec ip netns exec "$NAME-h$i" unshare --uts \
    sh -c 'hostname "$0" && shift && exec "$@"' "$NAME-h$i" - "$@"
}

cmd_hosts() {
  [ "${1:-}" = --name ] && NAME=${2:?}
  need_up
  awk '{print $1}' "$(state)/hosts"
}

# ---- down / check ------------------------------------------------------------
# members: pids of processes in NAME's namespaces or marked by its agent.
members() {
  local ns
  for ns in $(ip netns list | awk '{print $1}' | grep "^$NAME-h[0-9]*$" || true); do
    ip netns pids "$ns" 2>/dev/null || true
  done
  # also in a namespace whose name is gone (the inodes recorded by up)
  if [ -f "$(state)/hosts" ]; then
    stat -L -c '%i %n' /proc/[0-9]*/ns/net 2>/dev/null |
      awk 'NR == FNR { want[$3] = 1; next } ($1 in want) { split($2, a, "/"); print a[3] }' \
        "$(state)/hosts" - || true
  fi
  grep -lsxz "NN_CLUSTER_MEMBER=$NAME" /proc/[0-9]*/environ | cut -d/ -f3 || true
}

# leftovers: what of NAME exists (one line each); empty when clean.
leftovers() {
  local p
  ip netns list | awk '{print $1}' | grep "^$NAME-h[0-9]*$" | sed 's/^/namespace /' || true
  ip -o link show | awk -F': ' '{print $2}' | sed 's/@.*//' | grep -E "^$NAME-(br|[0-9]+)$" | sed 's/^/link /' || true
  for p in $(members | sort -un); do echo "process $p $(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | cut -c1-80)"; done
  ls -d /etc/netns/"$NAME"-h* 2>/dev/null | sed 's/^/file /' || true
  [ -e "$(state)" ] && echo "state $(state)"
  return 0
}

cmd_down() {
  [ "${1:-}" = --name ] && NAME=${2:?}
  need_name
  local pids i ns
  # SIGTERM, then SIGKILL from the fifth round (about 0.5 s) on
  for i in $(seq 1 20); do
    pids=$(members | sort -un | tr '\n' ' ')
    [ -n "${pids// /}" ] || break
    if [ "$i" -le 4 ]; then kill -TERM $pids 2>/dev/null || true; else kill -KILL $pids 2>/dev/null || true; fi
    sleep 0.1
  done
  for ns in $(ip netns list | awk '{print $1}' | grep "^$NAME-h[0-9]*$" || true); do
    ip netns del "$ns" 2>/dev/null || true
  done
  for l in $(ip -o link show | awk -F': ' '{print $2}' | sed 's/@.*//' | grep -E "^$NAME-(br|[0-9]+)$" || true); do
    ip link del "$l" 2>/dev/null || true
  done
  rm -rf /etc/netns/"$NAME"-h*
  local left
  left=$(leftovers | grep -v '^state ' || true)
  [ -z "$left" ] || { echo "cluster.sh: down: left behind of '$NAME':" >&2; echo "$left" >&2; return 1; }
  rm -rf "$(state)"
  mkdir -p "$STATE_ROOT"
  flock "$STATE_ROOT/lock" rmdir /etc/netns 2>/dev/null || true
}

cmd_check() {
  [ "${1:-}" = --name ] && NAME=${2:?}
  need_name
  local left
  left=$(leftovers)
  [ -z "$left" ] && return 0
  echo "cluster.sh: check: left behind of '$NAME':" >&2
  echo "$left" >&2
  return 1
}

cmd_with() {
  local k=${1:-}; shift || true
  local -a up=() run=()
  while [ $# -gt 0 ]; do
    case $1 in
      --rate) up+=(--rate "${2:?}"); shift 2 ;;
      --name) up+=(--name "${2:?}"); shift 2 ;;
      --ranks) run+=(--ranks "${2:?}"); shift 2 ;;
      --) shift; break ;;
      *) usage "with: unknown argument '$1' (mpirun's arguments go after --)" ;;
    esac
  done
  NAME=$("$SELF" up "$k" "${up[@]}") || exit $?
  export NN_CLUSTER=$NAME
  # mpirun runs in the background so that a signal to this script is handled
  # at once (bash defers traps until a foreground child ends): it stops
  # mpirun, and the EXIT trap removes the cluster and whatever is left in it.
  local rc=0 child
  trap '"$SELF" down --name "$NAME" || rc=1; exit $rc' EXIT
  "$SELF" run --name "$NAME" "${run[@]}" -- "$@" <&0 &
  child=$!
  trap 'kill -TERM $child 2>/dev/null; rc=130; exit 130' INT
  trap 'kill -TERM $child 2>/dev/null; rc=143; exit 143' TERM
  wait "$child" || rc=$?
  exit $rc
}

cmd=${1:-}; shift || true
case $cmd in
  up) cmd_up "$@" ;;
  run) cmd_run "$@" ;;
  exec) cmd_exec "$@" ;;
  hosts) cmd_hosts "$@" ;;
  down) cmd_down "$@" ;;
  check) cmd_check "$@" ;;
  with) cmd_with "$@" ;;
  probe) can_run ;;
  -h|--help|help) sed -n '/^# usage:/,/^# NAME defaults/p' "$SELF" | sed '$d; s/^# \{0,1\}//' ;;
  *) usage "unknown command '$cmd'" ;;
esac

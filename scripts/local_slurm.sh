#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, for the tests: munge, slurmctld and slurmd with their
# key, configuration, state and logs in one folder ($DIP_SLURM_DIR, default /tmp/dip_slurm).
#   scripts/local_slurm.sh start    # prints SLURM_CONF=<folder>/slurm.conf once sinfo answers
#   SLURM_CONF=/tmp/dip_slurm/slurm.conf sinfo
#   scripts/local_slurm.sh stop     # stops the daemons and removes the folder
# Needs root (the daemons run as root) and Debian's slurm-wlm and munge, which it installs when
# missing. No cgroups: proctrack/linuxproc, task/none. No accounting: sacct says it is disabled.
# When it cannot start, it prints one line saying why and exits 3.
set -uo pipefail
DIR="${DIP_SLURM_DIR:-/tmp/dip_slurm}"
CONF="$DIR/slurm.conf"
PARTITION="${DIP_SLURM_PARTITION:-debug}"

die() { echo "local SLURM cannot start: $*" >&2; exit 3; }

stop() {
  for pidfile in "$DIR/slurmd.pid" "$DIR/slurmctld.pid" "$DIR/munged.pid"; do
    [ -f "$pidfile" ] || continue
    pid=$(cat "$pidfile")
    kill "$pid" 2>/dev/null || continue
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  done
  pkill -f "slurmstepd.*$DIR" 2>/dev/null || true
  rm -rf "$DIR"
}

install() {
  command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null && return 0
  [ "$(id -u)" = 0 ] || die "slurm-wlm and munge are not installed and this user is not root to install them"
  command -v apt-get >/dev/null || die "slurm-wlm and munge are not installed and there is no apt-get"
  { apt-get install -y -q slurm-wlm munge >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q slurm-wlm munge >/dev/null 2>&1; }; } \
    || die "apt-get install slurm-wlm munge failed (no package registry?)"
}

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

start() {
  [ "$(id -u)" = 0 ] || die "the daemons run as root here, and this user is $(id -un)"
  install
  stop
  mkdir -p "$DIR/ctld" "$DIR/d" || die "cannot create $DIR"
  host=$(hostname -s)
  dd if=/dev/urandom of="$DIR/munge.key" bs=1024 count=1 status=none && chmod 400 "$DIR/munge.key"
  munged --force --key-file="$DIR/munge.key" --socket="$DIR/munge.sock" --pid-file="$DIR/munged.pid" \
    --log-file="$DIR/munged.log" --seed-file="$DIR/munged.seed" 2>"$DIR/munged.err" \
    || die "munged did not start: $(tr '\n' ' ' < "$DIR/munged.err")"
  # the node as slurmd sees it (CPUs, sockets, memory), less its uptime line
  node=$(slurmd -C | head -1 | sed "s/^NodeName=[^ ]*/NodeName=$host NodeAddr=127.0.0.1/")
  cat > "$CONF" <<EOF
ClusterName=dip
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$(free_port)
SlurmdPort=$(free_port)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$DIR/munge.sock
StateSaveLocation=$DIR/ctld
SlurmdSpoolDir=$DIR/d
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/slurmctld.log
SlurmdLogFile=$DIR/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
MpiDefault=none
ReturnToService=2
SchedulerParameters=sched_interval=1
$node State=UNKNOWN
PartitionName=$PARTITION Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
  export SLURM_CONF="$CONF"
  slurmctld -f "$CONF" 2>"$DIR/slurmctld.err" || die "slurmctld did not start: $(tail -3 "$DIR/slurmctld.log" "$DIR/slurmctld.err" 2>/dev/null | tr '\n' ' ')"
  slurmd -f "$CONF" 2>"$DIR/slurmd.err" || die "slurmd did not start: $(tail -3 "$DIR/slurmd.log" "$DIR/slurmd.err" 2>/dev/null | tr '\n' ' ')"
  for _ in $(seq 60); do
    state=$(sinfo -h -o %t 2>/dev/null | head -1)
    case "$state" in idle*|mix*|alloc*) echo "SLURM_CONF=$CONF"; return 0 ;; esac
    sleep 0.5
  done
  die "sinfo does not show the node up after 30 s (state: ${state:-none}; logs in $DIR)"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) SLURM_CONF="$CONF" sinfo ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac

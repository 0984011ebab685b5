#!/usr/bin/env bash
# Start a one-host Slurm cluster (munged, slurmctld, slurmd) for CI and for trying slurm_train.sh / slurm_test.sh.
#
#   sudo bash tools/ci/slurm_up.sh        # ... run the `slurm` tests ...      sudo bash tools/ci/slurm_down.sh
#
# Installs Debian's slurm-wlm and munge when missing (apt-get, as root), writes a slurm.conf for this host (its real
# CPU count and memory, one partition, no cgroups: it runs in containers), starts the daemons that are not running
# and waits until the node is idle. Idempotent: a second run starts nothing. The daemons it starts are recorded in
# $SLURM_CI_DIR/started/, which is all that slurm_down.sh stops.
#   env: SLURM_CI_DIR (/var/lib/slurm-ci: pid files, logs, spool), SLURM_CI_PARTITION (debug),
#        SLURM_CONF (/etc/slurm/slurm.conf), SLURM_CI_WAIT (60 s for the node to become idle)
set -euo pipefail

STATE_DIR=${SLURM_CI_DIR:-/var/lib/slurm-ci}
PARTITION=${SLURM_CI_PARTITION:-debug}
CONF=${SLURM_CONF:-/etc/slurm/slurm.conf}
WAIT_S=${SLURM_CI_WAIT:-60}
MARKER='# written by tools/ci/slurm_up.sh'
start=$(date +%s)

say() { echo "[slurm_up] $*"; }
fail() {
    echo "[slurm_up] error: $*" >&2
    for log in /var/log/munge/munged.log "$STATE_DIR"/log/*.log; do
        [ -f "$log" ] && { echo "--- last lines of $log" >&2; tail -n 15 "$log" >&2; }
    done
    exit 1
}

if [ "$(id -u)" -ne 0 ]; then
    fail "must run as root (it installs packages and starts munged, slurmctld and slurmd)"
fi

# --- packages --------------------------------------------------------------------------------------------------
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v srun >/dev/null \
        || ! command -v munged >/dev/null; then
    t0=$(date +%s)
    # Keep the packages' maintainer scripts from starting daemons of their own (which slurm_down.sh would not
    # know about); Docker-style images already have this policy file.
    own_policy=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && own_policy=1
    fi
    say "installing slurm-wlm and munge"
    apt-get update -qq || fail "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null \
        || fail "apt-get install slurm-wlm munge failed"
    [ "$own_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d
    say "installed in $(( $(date +%s) - t0 )) s"
fi

mkdir -p "$STATE_DIR"/{run,log,started,spool/ctld,spool/d}

# --- slurm.conf for this host ----------------------------------------------------------------------------------
if [ -f "$CONF" ] && ! grep -qF "$MARKER" "$CONF"; then
    fail "$CONF exists and was not written by this script: leaving it alone (set SLURM_CONF to another path)"
fi
HOST=$(hostname -s)
# slurmd -C prints this machine's NodeName line (CPUs, sockets, cores, threads, RealMemory) as slurmd sees it, so
# the node registers without a "configuration differs from hardware" drain.
NODE_LINE=$(slurmd -C | grep '^NodeName=' | sed 's/ UpTime=.*//') || fail "slurmd -C failed"
[ -n "$NODE_LINE" ] || fail "slurmd -C printed no NodeName line"
mkdir -p "$(dirname "$CONF")"
cat > "$CONF.new" <<EOF
$MARKER: a one-host cluster, no cgroups, no accounting
ClusterName=ci
SlurmctldHost=$HOST
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$STATE_DIR/spool/ctld
SlurmdSpoolDir=$STATE_DIR/spool/d
SlurmctldPidFile=$STATE_DIR/run/slurmctld.pid
SlurmdPidFile=$STATE_DIR/run/slurmd.pid
SlurmctldLogFile=$STATE_DIR/log/slurmctld.log
SlurmdLogFile=$STATE_DIR/log/slurmd.log
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
# cancelled tasks get SIGTERM, then SIGKILL after KillWait seconds
KillWait=5
MinJobAge=30
$NODE_LINE State=UNKNOWN
PartitionName=$PARTITION Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
if cmp -s "$CONF.new" "$CONF"; then
    rm -f "$CONF.new"
else
    mv "$CONF.new" "$CONF"
fi

# --- daemons ---------------------------------------------------------------------------------------------------
alive() {  # alive PIDFILE NAME: the pid file names a running process called NAME
    [ -f "$1" ] || return 1
    local pid
    pid=$(cat "$1" 2>/dev/null) || return 1
    [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$2" ]
}

record() {  # record NAME PIDFILE: remember that we started NAME (slurm_down.sh stops only these)
    local i
    for i in $(seq 50); do
        [ -s "$2" ] && break
        sleep 0.1
    done
    [ -s "$2" ] || fail "$1 started but wrote no pid file $2"
    cp "$2" "$STATE_DIR/started/$1.pid"
}

if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    say "munged already running"
else
    [ -f /etc/munge/munge.key ] || { mungekey --create >/dev/null 2>&1 \
        || dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 2>/dev/null; }
    chown munge:munge /etc/munge/munge.key && chmod 0400 /etc/munge/munge.key
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    chown munge:munge /run/munge /var/log/munge /var/lib/munge
    # munged runs as its own user and checks the ownership of its key, socket and log folders
    rm -f /run/munge/munged.pid
    runuser -u munge -- munged --pid-file=/run/munge/munged.pid --log-file=/var/log/munge/munged.log \
        || fail "munged did not start"
    record munged /run/munge/munged.pid
    say "started munged"
fi

if alive "$STATE_DIR/run/slurmctld.pid" slurmctld; then
    say "slurmctld already running"
    scontrol reconfigure >/dev/null 2>&1 || true  # picks up a changed slurm.conf
else
    rm -f "$STATE_DIR/run/slurmctld.pid"
    # -c: start from a clean state (no jobs or node states left by an earlier run)
    slurmctld -c -f "$CONF" || fail "slurmctld did not start"
    record slurmctld "$STATE_DIR/run/slurmctld.pid"
    say "started slurmctld"
fi

if alive "$STATE_DIR/run/slurmd.pid" slurmd; then
    say "slurmd already running"
else
    rm -f "$STATE_DIR/run/slurmd.pid"
    slurmd -f "$CONF" || fail "slurmd did not start"
    record slurmd "$STATE_DIR/run/slurmd.pid"
    say "started slurmd"
fi

# --- wait for the node -----------------------------------------------------------------------------------------
deadline=$(( $(date +%s) + WAIT_S ))
state=''
while [ "$(date +%s)" -lt "$deadline" ]; do
    state=$(sinfo -h -N -p "$PARTITION" -n "$HOST" -o '%t' 2>/dev/null | head -n1 || true)
    case "$state" in
        idle|mix|alloc) break ;;
        drain*|down*) scontrol update NodeName="$HOST" State=RESUME >/dev/null 2>&1 || true ;;
    esac
    sleep 1
done
case "$state" in
    idle|mix|alloc) ;;
    *) fail "node $HOST of partition $PARTITION is not idle after ${WAIT_S} s (sinfo state: '${state:-none}')" ;;
esac
say "partition $PARTITION, node $HOST ($state) ready in $(( $(date +%s) - start )) s"

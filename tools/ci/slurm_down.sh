#!/usr/bin/env bash
# Stop the Slurm daemons that tools/ci/slurm_up.sh started (and only those: it recorded their pids in
# $SLURM_CI_DIR/started/). Daemons that were already running before slurm_up.sh are left alone. Idempotent.
#   env: SLURM_CI_DIR (/var/lib/slurm-ci), SLURM_CI_STOP_WAIT (15 s per daemon before SIGKILL)
set -euo pipefail

STATE_DIR=${SLURM_CI_DIR:-/var/lib/slurm-ci}
WAIT_S=${SLURM_CI_STOP_WAIT:-15}

# slurmd first (it ends its job steps), then the controller, then munged (both need it to shut down cleanly)
for name in slurmd slurmctld munged; do
    record="$STATE_DIR/started/$name.pid"
    [ -f "$record" ] || continue
    pid=$(cat "$record")
    # a pid that now belongs to another program (the daemon died, its pid was reused) is not ours to stop
    if [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$name" ]; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq $(( WAIT_S * 10 ))); do
            [ -d "/proc/$pid" ] || break
            sleep 0.1
        done
        if [ -d "/proc/$pid" ]; then
            echo "[slurm_down] $name (pid $pid) did not stop within ${WAIT_S} s: SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
        echo "[slurm_down] stopped $name (pid $pid)"
    fi
    rm -f "$record"
done

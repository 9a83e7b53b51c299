#!/usr/bin/env bash
# Stop what .ci/slurm-up.sh started: slurmd, slurmctld and munged, each by its recorded pid.
# A SLURM or munged that the script did not start (no pid file under $ICSA_SLURM_DIR) is left alone.
set -uo pipefail

STATE="${ICSA_SLURM_DIR:-/tmp/icsa-slurm}"

stop() {  # stop NAME PIDFILE: SIGTERM, wait up to 10 s, then SIGKILL
    local name="$1" pidfile="$2" pid
    [ -s "$pidfile" ] || return 0
    pid="$(cat "$pidfile")"
    # Only if that pid is still the daemon (not a stale file whose pid was reused).
    if [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$name" ]; then
        kill -TERM "$pid" 2>/dev/null
        for _ in $(seq 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
        echo "slurm-down: stopped $name ($pid)" >&2
    fi
    rm -f "$pidfile"
}

stop slurmd "$STATE/run/slurmd.pid"
stop slurmctld "$STATE/run/slurmctld.pid"
stop munged "$STATE/run/munged.pid"
exit 0

#!/usr/bin/env bash
# Bring up a single-node SLURM (munged + slurmctld + slurmd) on this machine for the `slurm` tests.
#
# Debian/Ubuntu only, as root. Installs slurmctld, slurmd, slurm-client and munge with apt-get when
# they are missing, writes /etc/slurm/slurm.conf (the default path, so that the srun inside a job
# finds it) and keeps all state, spool, log and pid files under $ICSA_SLURM_DIR (default
# /tmp/icsa-slurm). On a machine without NVIDIA GPUs the node also gets $ICSA_SLURM_FAKE_GPUS
# (default 2, 0 for none) GPUs of type `fake`: character devices aliasing /dev/null, enough for
# SLURM to grant `--gpus` and set CUDA_VISIBLE_DEVICES, so that GPU requests are tested too. Exits 0 once `sinfo` shows the node idle; exits non-zero (and the slurm tests
# then skip) when SLURM cannot be started here. It never touches a SLURM it did not configure:
# if a controller already answers, or /etc/slurm/slurm.conf was written by someone else, it stops.
set -euo pipefail

STATE="${ICSA_SLURM_DIR:-/tmp/icsa-slurm}"
CONF=/etc/slurm/slurm.conf
MARK="# written by icsa .ci/slurm-up.sh"
say() { echo "slurm-up: $*" >&2; }

if command -v sinfo >/dev/null && timeout 10 sinfo -h >/dev/null 2>&1; then
    say "a SLURM controller already answers; using it as it is"
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    say "not root: cannot install or start SLURM here"
    exit 1
fi
if [ -e "$CONF" ] && ! grep -qF "$MARK" "$CONF"; then
    say "$CONF exists and was not written by this script; refusing to replace it"
    exit 1
fi

missing=()
for exe in /usr/sbin/slurmctld /usr/sbin/slurmd /usr/bin/sinfo /usr/sbin/munged; do
    [ -x "$exe" ] || missing+=("$exe")
done
if [ "${#missing[@]}" -gt 0 ]; then
    command -v apt-get >/dev/null || { say "apt-get not available; missing ${missing[*]}"; exit 1; }
    say "installing slurmctld slurmd slurm-client munge"
    export DEBIAN_FRONTEND=noninteractive
    timeout 600 apt-get update -q >/dev/null || { say "apt-get update failed"; exit 1; }
    timeout 900 apt-get install -y -q --no-install-recommends \
        slurmctld slurmd slurm-client munge >/dev/null || { say "apt-get install failed"; exit 1; }
fi

mkdir -p "$STATE"/{state,spool,log,run}

# munge: a key owned by munge, mode 0400; munged runs as the munge user.
install -d -o munge -g munge -m 0700 /etc/munge
if [ ! -s /etc/munge/munge.key ]; then
    head -c 1024 /dev/urandom >/etc/munge/munge.key
fi
chown munge:munge /etc/munge/munge.key
chmod 0400 /etc/munge/munge.key
install -d -o munge -g munge -m 0755 /run/munge /var/lib/munge /var/log/munge
if ! pgrep -u munge -x munged >/dev/null; then
    runuser -u munge -- /usr/sbin/munged --force
    cp /run/munge/munged.pid "$STATE/run/munged.pid"
fi

# One node: this machine's short host name, CPU count and a bit less memory than it has, so
# that slurmd's own check of the node never finds less than configured.
host="$(hostname -s)"
cpus="$(nproc)"
mem_mb=$(( $(awk '/^MemTotal:/ {print $2}' /proc/meminfo) / 1024 * 9 / 10 ))
mkdir -p /etc/slurm
fake_gpus="${ICSA_SLURM_FAKE_GPUS:-2}"
gres_types="" node_gres=""
if [ -e /etc/slurm/gres.conf ] && grep -qF "$MARK" /etc/slurm/gres.conf; then
    rm -f /etc/slurm/gres.conf
fi
if [ "$fake_gpus" -gt 0 ] && ! command -v nvidia-smi >/dev/null && [ ! -e /etc/slurm/gres.conf ]; then
    mkdir -p "$STATE/dev"
    made=1
    for i in $(seq 0 $((fake_gpus - 1))); do
        [ -c "$STATE/dev/gpu$i" ] || mknod "$STATE/dev/gpu$i" c 1 3 2>/dev/null || made=0
    done
    if [ "$made" = 1 ]; then
        printf '%s\nName=gpu Type=fake File=%s/dev/gpu[0-%d]\n' "$MARK" "$STATE" \
            $((fake_gpus - 1)) >/etc/slurm/gres.conf
        gres_types="GresTypes=gpu" node_gres="Gres=gpu:fake:${fake_gpus}"
    else
        say "cannot create device nodes (mknod); the node gets no GPUs"
    fi
fi
cat >"$CONF" <<EOF
$MARK
ClusterName=icsa-ci
$gres_types
SlurmctldHost=${host}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
MpiDefault=none
ReturnToService=2
# Finished jobs stay visible to squeue for 10 min: the executor reads their state from squeue.
MinJobAge=600
JobCompType=jobcomp/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
StateSaveLocation=$STATE/state
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/run/slurmctld.pid
SlurmdPidFile=$STATE/run/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
SlurmctldPort=6817
SlurmdPort=6818
NodeName=${host} NodeAddr=127.0.0.1 CPUs=${cpus} RealMemory=${mem_mb} $node_gres State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF

/usr/sbin/slurmctld
/usr/sbin/slurmd

for _ in $(seq 60); do
    state="$(sinfo -h -N -o '%t' 2>/dev/null | head -n1 || true)"
    case "$state" in
        idle*|mix*|alloc*)
            say "node ${host} is ${state} (CPUs=${cpus}, RealMemory=${mem_mb} MB ${node_gres})"
            exit 0 ;;
        down*|drain*) scontrol update NodeName="$host" State=RESUME >/dev/null 2>&1 || true ;;
    esac
    sleep 1
done
say "SLURM did not come up; logs in $STATE/log"
tail -n 20 "$STATE"/log/*.log >&2 || true
exit 1

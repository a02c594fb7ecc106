#!/usr/bin/env bash
# A single-node SLURM cluster on this machine, for the queue tests and benchmarks (run as root).
#
# Idempotent: installs slurm-wlm and munge with apt when absent, writes /etc/slurm/slurm.conf
# when it is not this script's, starts munged, slurmctld and slurmd only when `sinfo` does not
# answer, then waits until the node is idle. Leaves the daemons running (a second run reuses
# them); `scontrol shutdown` and `kill $(cat /run/munge/munged.pid)` stop them.
# Finished jobs are listed in /var/log/slurm/jobcomp.log (one line per job: id, name, state),
# which the tests read as this cluster has no accounting database for `sacct`.
set -euo pipefail

if [ "$(id -u)" != 0 ]; then
    echo "start_slurm.sh must run as root (it installs packages and starts daemons)" >&2
    exit 1
fi

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
fi

if sinfo -h >/dev/null 2>&1; then
    echo "SLURM already answers: $(sinfo -h -o '%P %a %D %t')"
    exit 0
fi

NODE="$(hostname -s)"
CONF=/etc/slurm/slurm.conf
MARK="# Written by scipion-em-deepfinder scripts/start_slurm.sh"
mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/munge
if [ ! -f "$CONF" ] || head -1 "$CONF" | grep -qxF "$MARK"; then
    cat >"$CONF" <<CONF
$MARK
ClusterName=local
SlurmctldHost=$NODE
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
JobCompLoc=/var/log/slurm/jobcomp.log
NodeName=$NODE CPUs=$(nproc) RealMemory=$(($(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 * 8 / 10)) State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
CONF
else
    echo "Keeping $CONF (not written by this script)"
fi

if [ ! -f /etc/munge/munge.key ]; then
    dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null
    chmod 400 /etc/munge/munge.key
fi
chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge
if ! munge -n >/dev/null 2>&1; then
    su -s /bin/sh munge -c /usr/sbin/munged
fi
pgrep -x slurmctld >/dev/null || /usr/sbin/slurmctld
pgrep -x slurmd >/dev/null || /usr/sbin/slurmd

for _ in $(seq 60); do
    state="$(sinfo -h -o '%t' 2>/dev/null || true)"
    case "$state" in
        idle | mix | alloc)
            echo "SLURM is up: $(sinfo -h -o '%P %a %D %t')"
            exit 0
            ;;
    esac
    sleep 1
done
echo "SLURM did not become ready in 60 s (node state: '${state:-no answer}'); see /var/log/slurm/" >&2
exit 1

#!/usr/bin/env bash
# A one-node Slurm cluster on localhost, for trying the sbatch recipes (and for CI).
#
#   examples/slurm/local-cluster.sh start DIR   # installs slurm + munge if missing (Debian, root)
#   examples/slurm/local-cluster.sh stop DIR    # stops the daemons this script started
#
# Everything (config, state, spool, logs, pids) lives under DIR; SLURM_CONF is written to
# DIR/env, so `. DIR/env` makes sbatch/squeue/sinfo talk to this cluster.
set -euo pipefail
cmd=${1:?start|stop}
dir=$(mkdir -p "${2:?state folder}" && cd "$2" && pwd)

running() {  # a live (not zombie) process with this exact name
  ps -eo stat=,comm= | awk -v n="$1" '$1 !~ /^Z/ && $2 == n {found=1} END {exit !found}'
}

stop() {
  if [ -f "$dir/slurm.conf" ] && [ -f "$dir/slurmctld.pid" ]; then
    SLURM_CONF=$dir/slurm.conf scancel --user "$(id -un)" 2>/dev/null || true
    for _ in $(seq 20); do  # let the jobs' processes end before the daemons go
      pgrep -f slurmstepd >/dev/null || break
      sleep 0.5
    done
  fi
  for name in slurmd slurmctld munged; do
    if [ -f "$dir/$name.pid" ]; then
      pid=$(cat "$dir/$name.pid")
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
      rm -f "$dir/$name.pid"
    fi
  done
}

if [ "$cmd" = stop ]; then stop; exit 0; fi
[ "$cmd" = start ] || { echo "usage: $0 start|stop DIR" >&2; exit 2; }

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq slurmctld slurmd slurm-client munge >/dev/null
fi

# munge: the Debian package makes /etc/munge/munge.key; run munged as user munge on its own socket
mkdir -p /run/munge
chown munge:munge /run/munge
[ -f /etc/munge/munge.key ] || { mungekey --create >/dev/null 2>&1 || /usr/sbin/create-munge-key -f; }
if ! running munged; then
  su -s /bin/sh munge -c "/usr/sbin/munged --pid-file=/run/munge/abaw-munged.pid"
  cp /run/munge/abaw-munged.pid "$dir/munged.pid"
fi

if running slurmctld || running slurmd; then
  echo "a slurmctld/slurmd is already running on this machine; stop it first" >&2
  exit 1
fi

cpus=$(nproc)
mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 / 2 ))
mkdir -p "$dir/state" "$dir/spool" "$dir/log"
cat > "$dir/slurm.conf" <<CONF
ClusterName=abawlocal
SlurmctldHost=localhost
SlurmUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
ReturnToService=2
MaxArraySize=1001
NodeName=localhost CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONF
echo "export SLURM_CONF=$dir/slurm.conf" > "$dir/env"
export SLURM_CONF=$dir/slurm.conf
slurmctld -f "$SLURM_CONF"
slurmd -f "$SLURM_CONF"
for _ in $(seq 60); do
  if sinfo -h -o %T 2>/dev/null | grep -q idle; then
    echo "slurm up: $(sinfo -h -o '%P %D %T')  (. $dir/env)" >&2
    exit 0
  fi
  sleep 0.5
done
echo "slurm did not come up; logs in $dir/log" >&2
tail -n 20 "$dir"/log/*.log >&2 || true
stop
exit 1

#!/usr/bin/env bash
# A private single-node Slurm cluster on this machine, from Debian's packages (slurm-wlm, munge), for the
# tests and for trying the slurm executor without a cluster. Everything lives in one state folder: its own
# munge key and socket, slurm.conf, spool, state and logs. The daemons listen on 127.0.0.1 only.
#
#   scripts/slurm_local.sh start DIR [CPUS]   # write DIR/slurm.conf, start munged, slurmctld, slurmd; wait
#                                             # until `sinfo` shows the node idle; print `export SLURM_CONF=...`
#   scripts/slurm_local.sh stop DIR           # stop the three daemons started from DIR (by their pid files)
#   export SLURM_CONF=DIR/slurm.conf          # then sbatch, squeue, scancel, `scalinglab study run` use it
#
# Needs root (slurmd runs jobs as their user) and `apt-get install slurm-wlm munge` (.ci/run does it).
set -euo pipefail

cmd="${1:-}"
dir="${2:-}"
if [ -z "$cmd" ] || [ -z "$dir" ]; then
  echo "usage: $0 start|stop DIR [CPUS]" >&2
  exit 2
fi

stop() {
  local rc=0 name pidf pid
  for name in slurmd slurmctld munged; do
    pidf="$dir/run/$name.pid"
    [ -f "$pidf" ] || continue
    pid="$(cat "$pidf")"
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || rc=1; fi
    fi
    rm -f "$pidf"
  done
  return $rc
}

if [ "$cmd" = "stop" ]; then
  stop
  exit $?
fi
if [ "$cmd" != "start" ]; then
  echo "$0: unknown command '$cmd' (start or stop)" >&2
  exit 2
fi

for exe in munged slurmctld slurmd sinfo; do
  if ! command -v "$exe" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$exe" ]; then
    echo "$0: $exe not found (apt-get install slurm-wlm munge)" >&2
    exit 3
  fi
done
if [ "$(id -u)" != "0" ]; then
  echo "$0: needs root (slurmd starts jobs as their user)" >&2
  exit 3
fi
export PATH="$PATH:/usr/sbin"

cpus="${3:-$(nproc)}"
[ "$cpus" -ge 2 ] || cpus=2
dir="$(mkdir -p "$dir" && cd "$dir" && pwd)"
mkdir -p "$dir/run" "$dir/state" "$dir/spool" "$dir/log"
chmod 700 "$dir" "$dir/run"
user="$(id -un)"
mem_mb=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 / 2 ))

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
ctld_port="$(free_port)"
slurmd_port="$(free_port)"
while [ "$slurmd_port" = "$ctld_port" ]; do slurmd_port="$(free_port)"; done

# munge: a key and a socket of our own, so that this cluster never talks to another one on the machine
if [ ! -f "$dir/munge.key" ]; then
  dd if=/dev/urandom of="$dir/munge.key" bs=1024 count=1 status=none
fi
chmod 400 "$dir/munge.key"

cat > "$dir/slurm.conf" <<EOF
# written by scripts/slurm_local.sh: one node, this machine, 127.0.0.1 only
ClusterName=scalinglab
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
CommunicationParameters=NoInAddrAny,NoCtldInAddrAny
SlurmUser=$user
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$dir/run/munge.sock,cred_expire=10
CredType=cred/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/run/slurmctld.pid
SlurmdPidFile=$dir/run/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SwitchType=switch/none
MpiDefault=none
SchedulerType=sched/builtin
SchedulerParameters=sched_interval=1
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmdParameters=config_overrides
ReturnToService=2
KillWait=2
MinJobAge=600
InactiveLimit=0
MessageTimeout=20
NodeName=localhost NodeAddr=127.0.0.1 NodeHostname=localhost CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
export SLURM_CONF="$dir/slurm.conf"

stop || true  # leftovers of an earlier start from this folder
munged --force --socket="$dir/run/munge.sock" --key-file="$dir/munge.key" --pid-file="$dir/run/munged.pid" \
  --log-file="$dir/log/munged.log" --seed-file="$dir/run/munged.seed"
slurmctld -f "$SLURM_CONF" -i
slurmd -f "$SLURM_CONF" -N localhost

for _ in $(seq 300); do
  state="$(sinfo -h -n localhost -o %t 2>/dev/null || true)"
  if [ "$state" = "idle" ]; then
    echo "export SLURM_CONF=$SLURM_CONF"
    exit 0
  fi
  sleep 0.2
done
echo "$0: the node did not become idle in 60 s (sinfo: '${state:-no answer}'); logs in $dir/log" >&2
tail -5 "$dir/log/slurmctld.log" "$dir/log/slurmd.log" >&2 || true
stop || true
exit 1

#!/usr/bin/env bash
# A single-node Slurm cluster on localhost, for tests and for trying the batch scripts.
#
#   slurm/local-cluster.sh up       # install slurm-wlm + munge if missing (root, apt-get), start
#                                   # munged, slurmctld, slurmd; wait until the node is idle
#   slurm/local-cluster.sh down     # cancel all jobs, stop the daemons
#   slurm/local-cluster.sh env      # print `export SLURM_CONF=...` for the client commands
#   eval "$(slurm/local-cluster.sh env)"; sbatch slurm/cpu.sbatch
#
# Everything lives in $DISTNQS_SLURM_DIR (default /tmp/distnqs-slurm): slurm.conf, a private munge
# key and socket, state, spool and logs; nothing under /etc is touched. One node (this host,
# 127.0.0.1), DISTNQS_SLURM_CPUS CPUs (default 2), one partition `debug`. No cgroup plugins
# (proctrack/linuxproc, task/none), no accounting daemon. Daemons run as root. `up` is idempotent.
set -euo pipefail

DIR=${DISTNQS_SLURM_DIR:-/tmp/distnqs-slurm}
CPUS=${DISTNQS_SLURM_CPUS:-2}
CTLD_PORT=${DISTNQS_SLURM_CTLD_PORT:-16817}
SLURMD_PORT=${DISTNQS_SLURM_SLURMD_PORT:-16818}
CONF=$DIR/slurm.conf
SOCKET=$DIR/munge/munge.socket.2
HOST=$(hostname -s)

die() { echo "local-cluster: error: $*" >&2; exit 1; }

alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

install_packages() {
    local missing=()
    for exe in slurmctld:slurmctld slurmd:slurmd sbatch:slurm-client munged:munge; do
        command -v "${exe%%:*}" >/dev/null 2>&1 || PATH=$PATH:/usr/sbin command -v "${exe%%:*}" >/dev/null 2>&1 \
            || missing+=("${exe#*:}")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    [ "$(id -u)" -eq 0 ] || die "Slurm is not installed (${missing[*]}) and installing it needs root (apt-get)"
    command -v apt-get >/dev/null || die "Slurm is not installed (${missing[*]}) and there is no apt-get here"
    echo "local-cluster: installing slurm-wlm and munge with apt-get" >&2
    apt-get -o DPkg::Lock::Timeout=600 update -qq >/dev/null || die "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends slurm-wlm munge >/dev/null \
        || die "apt-get install slurm-wlm munge failed"
}

write_config() {
    mkdir -p "$DIR"/{munge,ctld,spool,log}
    chmod 700 "$DIR/munge"
    if [ ! -s "$DIR/munge/munge.key" ]; then
        dd if=/dev/urandom of="$DIR/munge/munge.key" bs=1024 count=1 status=none
        chmod 400 "$DIR/munge/munge.key"
    fi
    cat > "$CONF" <<EOF
# written by slurm/local-cluster.sh
ClusterName=distnqs-local
SlurmctldHost=$HOST(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$SOCKET,cred_expire=10
StateSaveLocation=$DIR/ctld
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SwitchType=switch/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/builtin
SchedulerParameters=sched_interval=2
SlurmdParameters=config_overrides
MpiDefault=none
ReturnToService=2
JobRequeue=1
MinJobAge=3600
KillWait=30
InactiveLimit=0
MessageTimeout=10
MailProg=/bin/true
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$CPUS State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
}

# never fails: under set -e + pipefail a refused sinfo (slurmctld still starting) would end the script silently
node_state() { { SLURM_CONF=$CONF sinfo -h -N -o '%T' 2>/dev/null || true; } | head -n1; }

wait_idle() {
    local state=""
    for _ in $(seq 1 150); do
        state=$(node_state)
        case "$state" in idle|mixed|allocated) return 0 ;; esac
        sleep 0.2
    done
    echo "local-cluster: node state '${state:-no answer}' after 30 s; last log lines:" >&2
    tail -n 20 "$DIR/log/slurmctld.log" "$DIR/log/slurmd.log" >&2 2>/dev/null || true
    die "the Slurm node did not become idle"
}

up() {
    install_packages
    export PATH=$PATH:/usr/sbin
    if alive "$DIR/munged.pid" && alive "$DIR/slurmctld.pid" && alive "$DIR/slurmd.pid" \
        && SLURM_CONF=$CONF scontrol ping >/dev/null 2>&1; then
        wait_idle
        echo "local-cluster: already up ($CONF)" >&2
        return 0
    fi
    down_daemons
    write_config
    munged --force --socket="$SOCKET" --key-file="$DIR/munge/munge.key" --pid-file="$DIR/munged.pid" \
        --log-file="$DIR/log/munged.log" --seed-file="$DIR/munge/munged.seed" \
        || die "munged did not start: $(tail -n 3 "$DIR/log/munged.log" 2>/dev/null)"
    # -c: cold start (no jobs from an earlier cluster); -i: ignore unreadable state
    SLURM_CONF=$CONF slurmctld -c -i || die "slurmctld did not start: $(tail -n 5 "$DIR/log/slurmctld.log" 2>/dev/null)"
    SLURM_CONF=$CONF slurmd || die "slurmd did not start: $(tail -n 5 "$DIR/log/slurmd.log" 2>/dev/null)"
    wait_idle
    echo "local-cluster: up; export SLURM_CONF=$CONF" >&2
}

stop_pidfile() {
    local pidfile=$1 pid
    alive "$pidfile" || { rm -f "$pidfile"; return 0; }
    pid=$(cat "$pidfile")
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
    rm -f "$pidfile"
}

down_daemons() {
    stop_pidfile "$DIR/slurmd.pid"
    stop_pidfile "$DIR/slurmctld.pid"
    stop_pidfile "$DIR/munged.pid"
}

down() {
    export PATH=$PATH:/usr/sbin
    if [ -f "$CONF" ] && alive "$DIR/slurmctld.pid"; then
        SLURM_CONF=$CONF scancel --quiet --partition=debug 2>/dev/null || true
        for _ in $(seq 1 100); do
            [ -z "$(SLURM_CONF=$CONF squeue -h -t running,completing 2>/dev/null)" ] && break
            sleep 0.2
        done
    fi
    down_daemons
    echo "local-cluster: down" >&2
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    env) echo "export SLURM_CONF=$CONF" ;;
    *) echo "usage: $0 up|down|env" >&2; exit 2 ;;
esac

#!/usr/bin/env bash
# A real, local Slurm cluster for tests: one slurmctld and four slurmd ("nodes" n1..n4) on
# this host, every file under one directory, nothing written to the system's /etc/slurm.
#
#   tests/slurm/cluster.sh start    # install Debian packages if missing, (re)start, wait idle
#   tests/slurm/cluster.sh status   # exit 0 when all nodes answer, print sinfo
#   tests/slurm/cluster.sh stop     # cancel jobs, stop the daemons started from the directory
#   tests/slurm/cluster.sh env      # print the export line (as start does)
#   tests/slurm/cluster.sh kill-node NODE JOBID [down]   # a node of a job dies (tests)
#   tests/slurm/cluster.sh kill-job JOBID   # scancel, then SIGKILL what is left of the job
#
# Exit codes: 0 ok, 1 error (see the message and $DIR/log), 2 usage, 3 the Slurm packages are
# missing and cannot be installed (not root, no apt-get, no network): tests skip on 3.
#
# `start` prints one line on stdout, `export SLURM_CONF=...`, so `eval "$(cluster.sh start)"`
# points sbatch/squeue/sinfo at this cluster; every message goes to stderr. `start` is
# idempotent: a healthy cluster is left running; a partial one is stopped and started anew.
#
# Environment:
#   MPICKPT_SLURM_DIR      state directory (default /tmp/mpickpt-slurm)
#   MPICKPT_SLURM_PORT     slurmctld port; slurmd ports follow it (default 16817, 16818..16821)
#   MPICKPT_SLURM_CPUS     CPUs each fake node declares (default 4)
#   MPICKPT_SLURM_TIMEOUT  seconds to wait for the nodes to become idle (default 60)
#   MPICKPT_SLURM_HOSTNAMES  distinct (default): each slurmd runs in its own UTS namespace
#                          (`unshare --uts`) with hostname = node name, so Open MPI sees n1..n4
#                          as different hosts (ranks on n1 and n2 need `--mca btl self,sm,tcp`
#                          and e.g. `--map-by ppr:2:node`; COMM_TYPE_SHARED splits per node);
#                          shared: all nodes keep this host's name and Open MPI merges them into
#                          one host. Falls back to shared when unshare is not permitted.
#
# Choices (measured on Debian 12, Slurm 22.05):
#   - AuthType=auth/none + CredType=cred/none: no munge daemon to run; fine on one host.
#   - SlurmdParameters=config_overrides lets each fake node declare more CPUs than the host has.
#   - AuthInfo=cred_expire=5 (the minimum), sched_interval=1, bf_interval=1: a requeued job is
#     held for cred_expire + 1 seconds (default 121), and nothing but a periodic scheduler
#     pass starts it then (defaults every 60 and 30 s): requeue to restart takes ~6 s.
#   - batch_sched_delay=0: sbatch to running takes ~0.1-0.9 s.
#   - ProctrackType=proctrack/linuxproc, TaskPlugin=task/none: no cgroups needed.
#   - Direct srun launch of MPI ranks is not supported by ULFM; jobs run mpirun inside the
#     allocation, and Open MPI detects the allocation from the SLURM_* variables.
set -euo pipefail

DIR=${MPICKPT_SLURM_DIR:-/tmp/mpickpt-slurm}
PORT=${MPICKPT_SLURM_PORT:-16817}
CPUS=${MPICKPT_SLURM_CPUS:-4}
TIMEOUT=${MPICKPT_SLURM_TIMEOUT:-60}
HOSTNAMES=${MPICKPT_SLURM_HOSTNAMES:-distinct}
NODES=(n1 n2 n3 n4)
PACKAGES=(slurmctld slurmd slurm-client)

mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd -P)
CONF=$DIR/etc/slurm.conf
export SLURM_CONF=$CONF

say() { echo "cluster.sh: $*" >&2; }
die() { say "ERROR: $*"; exit 1; }
cannot_install() { say "CANNOT INSTALL: $*"; exit 3; }  # tests skip on exit code 3

# ---------------------------------------------------------------------------------------------
install_packages() {
    local missing=() p
    for p in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' \
            || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    [ "$(id -u)" -eq 0 ] || cannot_install "Slurm packages missing (${missing[*]}) and not root"
    command -v apt-get >/dev/null || cannot_install "Slurm packages missing (${missing[*]}), no apt-get"
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # Update the package lists only when the install cannot find the packages as they are.
    if ! apt-get install -y -qq --no-install-recommends "${missing[@]}" >"$DIR/apt.log" 2>&1; then
        apt-get update -qq >>"$DIR/apt.log" 2>&1 \
            || { tail -5 "$DIR/apt.log" >&2; cannot_install "apt-get update failed (no network?)"; }
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >>"$DIR/apt.log" 2>&1 \
            || { tail -5 "$DIR/apt.log" >&2; cannot_install "apt-get install ${missing[*]} failed"; }
    fi
    if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null \
        || ! command -v sbatch >/dev/null; then
        die "Slurm commands not found after install"
    fi
}

write_conf() {
    local host n
    host=$(hostname -s)
    mkdir -p "$DIR"/{etc,state,log,run,spool,tmp}
    for n in "${NODES[@]}"; do mkdir -p "$DIR/spool/$n" "$DIR/tmp/$n"; done
    cat >"$CONF" <<EOF
# Generated by tests/slurm/cluster.sh; rewritten at each start.
ClusterName=mpickpt
MailProg=/bin/true
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/none
CredType=cred/none
AuthInfo=cred_expire=5
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool/%n
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd-%n.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd-%n.log
SlurmctldDebug=info
SlurmdDebug=info
TmpFS=$DIR/tmp/%n
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
SwitchType=switch/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,bf_interval=1,sched_interval=1
SlurmdParameters=config_overrides
ReturnToService=2
JobRequeue=1
KillWait=10
MinJobAge=300
InactiveLimit=0
SlurmdTimeout=60
NodeName=n[1-4] NodeAddr=127.0.0.1 Port=[$((PORT + 1))-$((PORT + 4))] CPUs=$CPUS State=UNKNOWN
PartitionName=debug Nodes=n[1-4] Default=YES MaxTime=INFINITE State=UP
EOF
}

# Is process $1 one we started? Daemons (and the slurmstepd they fork) carry
# MPICKPT_SLURM_DAEMON=$DIR; job processes carry SLURM_JOB_ID and SLURM_CONF=$CONF. A client
# shell that merely exported SLURM_CONF matches neither.
ours() {
    local pid=$1 env
    [ -n "$pid" ] || return 1
    env=$( { tr '\0' '\n' <"/proc/$pid/environ"; } 2>/dev/null) || return 1
    grep -qxF "MPICKPT_SLURM_DAEMON=$DIR" <<<"$env" && return 0
    grep -q '^SLURM_JOB_ID=' <<<"$env" && grep -qxF "SLURM_CONF=$CONF" <<<"$env"
}
daemon_pid() {  # name: slurmctld | slurmd-nX
    local f=$DIR/run/$1.pid pid
    [ -r "$f" ] || return 1
    pid=$(tr -dc '0-9' <"$f")
    ours "$pid" && echo "$pid"
}

# Every process started from this directory: daemons, slurmstepd, job processes.
our_pids() {
    local p
    for p in /proc/[0-9]*; do
        p=${p#/proc/}
        [ "$p" = "$$" ] && continue
        ours "$p" && echo "$p"
    done
    return 0
}

nodes_idle() {  # all nodes up (idle, mixed or allocated) and slurmctld answers
    local states
    states=$(sinfo -h -N -o '%N %t' 2>/dev/null) || return 1
    [ "$(echo "$states" | grep -cE ' (idle|mix|alloc)$')" -eq ${#NODES[@]} ]
}

all_running() {
    local n
    daemon_pid slurmctld >/dev/null || return 1
    for n in "${NODES[@]}"; do daemon_pid "slurmd-$n" >/dev/null || return 1; done
}

# ---------------------------------------------------------------------------------------------
do_stop() {
    local left=()
    if daemon_pid slurmctld >/dev/null; then
        scancel --full --quiet --partition=debug 2>/dev/null || true
        for _ in $(seq 1 20); do  # up to 10 s for jobs to finish cleanly
            [ -z "$(squeue -h -o %i 2>/dev/null)" ] && break
            sleep 0.5
        done
    fi
    mapfile -t left < <(our_pids)
    if [ ${#left[@]} -gt 0 ]; then kill -TERM "${left[@]}" 2>/dev/null || true; fi
    for _ in $(seq 1 20); do
        mapfile -t left < <(our_pids)
        [ ${#left[@]} -eq 0 ] && break
        sleep 0.25
    done
    if [ ${#left[@]} -gt 0 ]; then
        say "killing leftover processes: ${left[*]}"
        kill -KILL "${left[@]}" 2>/dev/null || true
        sleep 0.5
    fi
    rm -f "$DIR"/run/*.pid
    [ -z "$(our_pids)" ] || die "processes of $DIR still alive: $(our_pids | tr '\n' ' ')"
}

do_start() {
    local n deadline
    install_packages
    if all_running && nodes_idle; then
        say "already running ($DIR)"
        echo "export SLURM_CONF=$CONF"
        return 0
    fi
    do_stop  # partial or stale: start from a clean state
    write_conf
    rm -rf "${DIR:?}"/state/* "${DIR:?}"/log/*
    # -c: clear previous job and node state; daemons detach themselves.
    export MPICKPT_SLURM_DAEMON=$DIR
    slurmctld -c -f "$CONF" || die "slurmctld failed to start; see $DIR/log/slurmctld.log"
    if [ "$HOSTNAMES" = distinct ] && ! unshare --uts true 2>/dev/null; then
        say "unshare --uts not permitted: nodes share this host's name (Open MPI sees one host)"
        HOSTNAMES=shared
    fi
    for n in "${NODES[@]}"; do
        if [ "$HOSTNAMES" = distinct ]; then
            # slurmd daemonizes; its namespace (and hostname) is inherited by the job steps.
            unshare --uts sh -c "hostname $n && exec slurmd -N $n -f '$CONF'"
        else
            slurmd -N "$n" -f "$CONF"
        fi || die "slurmd -N $n failed; see $DIR/log/slurmd-$n.log"
    done
    echo "$HOSTNAMES" >"$DIR/run/hostnames"
    unset MPICKPT_SLURM_DAEMON
    deadline=$((SECONDS + TIMEOUT))
    until nodes_idle; do
        if [ $SECONDS -ge $deadline ]; then
            sinfo -N >&2 || true
            tail -n 20 "$DIR/log/slurmctld.log" >&2 || true
            do_stop || true
            die "nodes not idle after ${TIMEOUT}s; logs in $DIR/log"
        fi
        sleep 0.2
    done
    say "cluster up: ${NODES[*]} x $CPUS CPUs, partition debug, $HOSTNAMES hostnames ($DIR)"
    echo "export SLURM_CONF=$CONF"
}

do_status() {
    if all_running && nodes_idle; then
        sinfo -N >&2
        echo "export SLURM_CONF=$CONF"
        return 0
    fi
    say "not running (or not healthy) in $DIR"
    return 1
}

# Simulate the death of node $1 for job $2: SIGKILL every process of the job on that node
# (mpirun's daemon prted and its ranks, or the batch shell itself on the first node), found by
# the node's UTS namespace; with "down", also mark the node DOWN, as slurmctld would once it
# stops answering (a --no-kill job then loses it from its allocation). The slurmd itself
# stays up, so with ReturnToService=2 the node comes back idle soon after.
do_kill_node() {
    local node=${1:?node} job=${2:?job id} down=${3:-} dpid ns p env victims=()
    dpid=$(daemon_pid "slurmd-$node") || die "slurmd for $node not running"
    [ "$(cat "$DIR/run/hostnames" 2>/dev/null)" = distinct ] \
        || die "kill-node needs distinct hostnames (each node in its own UTS namespace)"
    ns=$(readlink "/proc/$dpid/ns/uts")
    for p in /proc/[0-9]*; do
        p=${p#/proc/}
        [ "$(readlink "/proc/$p/ns/uts" 2>/dev/null)" = "$ns" ] || continue
        env=$( { tr '\0' '\n' <"/proc/$p/environ"; } 2>/dev/null) || continue
        grep -qxF "SLURM_JOB_ID=$job" <<<"$env" && victims+=("$p")
    done
    [ ${#victims[@]} -gt 0 ] || die "no process of job $job on $node"
    say "killing job $job on $node: ${victims[*]}"
    kill -KILL "${victims[@]}" 2>/dev/null || true
    if [ "$down" = down ]; then
        scontrol update nodename="$node" state=down reason="kill-node by test"
    fi
}

# SIGKILL every process of job $1 left on this host: a process whose parent died escapes
# proctrack/linuxproc, so `scancel` alone can leave a hung mpirun behind.
do_kill_job() {
    local job=${1:?job id} p env victims=()
    scancel "$job" 2>/dev/null || true
    for p in /proc/[0-9]*; do
        p=${p#/proc/}
        env=$( { tr '\0' '\n' <"/proc/$p/environ"; } 2>/dev/null) || continue
        grep -qxF "SLURM_JOB_ID=$job" <<<"$env" && grep -qxF "SLURM_CONF=$CONF" <<<"$env" \
            && victims+=("$p")
    done
    if [ ${#victims[@]} -gt 0 ]; then
        say "killing processes of job $job: ${victims[*]}"
        kill -KILL "${victims[@]}" 2>/dev/null || true
    fi
}

case ${1:-} in
    start) do_start ;;
    kill-job) shift; do_kill_job "$@" ;;
    kill-node) shift; do_kill_node "$@" ;;
    stop) do_stop; say "stopped ($DIR)" ;;
    status) do_status ;;
    env) echo "export SLURM_CONF=$CONF" ;;
    *) echo "usage: $0 start|stop|status|env|kill-node NODE JOBID [down]|kill-job JOBID" >&2
       exit 2 ;;
esac

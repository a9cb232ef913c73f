#!/bin/bash
# submit-chain.sh: run an mpickpt job longer than one allocation by chaining jobs.
#
#   jobscripts/submit-chain.sh LINKS [sbatch options...]
#
# Submits LINKS copies of resilient.sbatch (or $SCRIPT), each one starting after the previous
# one ends, whatever its exit (`--dependency=afterany:<previous id>`). Every link shares one
# SPILL_DIR and runs with ON_STOP=exit: when Slurm warns that the time limit is near, the
# application writes a final spill and exits 76, the link ends, and the next link resumes from
# the spill. Once a link reports the run done (or failed) in the state file beside the spill,
# the remaining links exit at once. Prints the job ids, one a line.
#
# Example (3 nodes x 3 tasks = 9 ranks: 8 workers + 1 spare; 4 links of 12 h):
#   SPILL_DIR=$PWD/ckpt NSPARES=1 APP_ARGS="--steps 100000 --size 4096 --every 50" \
#       jobscripts/submit-chain.sh 4 --time=12:00:00 --nodes=3 --ntasks-per-node=3
# The sbatch options given here override the script's #SBATCH lines; the settings (NSPARES,
# APP, APP_ARGS, ...) and the "Environment" block to edit are those of resilient.sbatch, whose
# header says what the application must accept.
#
# The alternative inside one job id is ON_STOP=requeue (resilient.sbatch's default): the job
# requeues itself with `scontrol requeue`; use that where the site allows requeueing.
set -euo pipefail

if [ $# -lt 1 ] || ! [ "$1" -ge 1 ] 2>/dev/null; then
    echo "usage: $0 LINKS [sbatch options...]" >&2
    exit 2
fi
LINKS=$1
shift
SCRIPT=${SCRIPT:-$(dirname "$0")/resilient.sbatch}
SPILL_DIR=${SPILL_DIR:-$PWD/ckpt-chain-$(date +%Y%m%d-%H%M%S)}
STATE_FILE=${STATE_FILE:-${SPILL_DIR%/}.state}
rm -f "$STATE_FILE"  # a new chain: forget the outcome of an earlier one on this spill
export SPILL_DIR STATE_FILE ON_STOP=exit

prev=
for _ in $(seq 1 "$LINKS"); do
    dep=()
    [ -n "$prev" ] && dep=(--dependency="afterany:$prev")
    prev=$(sbatch --parsable --export=ALL "${dep[@]}" "$@" "$SCRIPT")
    prev=${prev%%;*}  # "id;cluster" on multi-cluster sites
    echo "$prev"
done
echo "chain of $LINKS jobs submitted; spill $SPILL_DIR, outcome in $STATE_FILE" >&2

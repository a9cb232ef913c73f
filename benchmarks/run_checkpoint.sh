#!/usr/bin/env bash
# Run the checkpoint benchmark at 6 workers (the issue's configuration), then the breakdown.
#
#   benchmarks/run_checkpoint.sh [OUTDIR]          # tables on stdout, JSON in OUTDIR
#   ISOLATE=1 benchmarks/run_checkpoint.sh         # also: one fresh job per scheme at 256 MB,
#                                                  # to cross-check the memory numbers
# Environment: NP (default 6), SIZES (16,64,256), REPEATS (3), PROFILE (64; 0 = skip),
# MPIEXEC (the launch command without -n).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-${TMPDIR:-/tmp}/mpickpt-bench}"
mkdir -p "$out"
np="${NP:-6}"
mpiexec_cmd=(${MPIEXEC:-mpiexec --allow-run-as-root --with-ft ulfm --oversubscribe --mca btl self,sm})

run() { "${mpiexec_cmd[@]}" -n "$np" python "$here/bench_checkpoint.py" "$@"; }

echo "== main run: $(date -Is), load $(cut -d' ' -f1-3 /proc/loadavg)"
run --sizes "${SIZES:-16,64,256}" --repeats "${REPEATS:-3}" --json "$out/main.json"

if [[ "${PROFILE:-64}" != 0 ]]; then
    echo "== breakdown at ${PROFILE:-64} MB: $(date -Is), load $(cut -d' ' -f1-3 /proc/loadavg)"
    run --sizes '' --no-h5py --repeats 15 --profile "${PROFILE:-64}"
fi

if [[ "${ISOLATE:-0}" != 0 ]]; then
    for scheme in parity mirror stripe; do
        echo "== fresh job, $scheme at 256 MB (memory cross-check)"
        run --sizes 256 --repeats 2 --schemes "$scheme" --no-h5py --json "$out/isolated-$scheme.json" \
            | sed -n '/## Extra RAM/,/^held:/p'
    done
fi

#!/usr/bin/env bash
# Repeat copy, LSTM-controller NTM, the fast preset, several seeds at once on one GPU (MPS).
# Asked whether other seeds generalise where seed 1 does not; they fail the same way, their write
# head coming round the 128-slot memory onto the inputs (RESULTS.md, "Repeat copy").
#   SEEDS="2 3 4 5 6 7 8 9" SECONDS_EACH=400 bash results/scripts/gpu_repeat_copy_seeds.sh
# Writes runs/repeat_copy-seeds/seedS/ and, where $OUT is set, a tarball of them there.
set -u
cd "$(dirname "$0")/../.."
PY=${PY:-python3}
DEVICE=${DEVICE:-cuda}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
[ "$DEVICE" = cuda ] && { nvidia-cuda-mps-control -d 2>/dev/null || true; }
dir=runs/repeat_copy-seeds
mkdir -p "$dir"
for seed in ${SEEDS:-2 3 4 5 6 7 8 9}; do
    "$PY" -m ntm train repeat_copy --seed "$seed" --out "$dir/seed$seed" --no-progress \
        --set train.device="$DEVICE" --set train.max_seconds="${SECONDS_EACH:-400}" \
        > "$dir/seed$seed.log" 2>&1 &
done
wait
tail -n 2 "$dir"/*.log
[ -n "${OUT:-}" ] && tar czf "$OUT/repeat_copy_seeds.tgz" "$dir"
exit 0

#!/usr/bin/env bash
# One-command GPU check (issue 11): training speed on CUDA, then Fast Pose Distillation on LSP at GPU batch
# sizes (teacher 8x256, student 4x128 alone and distilled with alpha 0.5, 256x256), each run under a time
# budget. Seen whole once: 8 minutes on one H200 with SPEED=0 TEACHER_MINUTES=2 STUDENT_MINUTES=1 (2026-11-27;
# RESULTS.md, "GPU check, third session"); the training-speed part (on by default) comes on top.
# Writes one markdown file, OUT_FOLDER/gpu_check.md (default
# gpu_check/).
#
#     bash benchmarks/gpu_check.sh [OUT_FOLDER]
#
# Runs offline. It needs, on the GPU machine:
#   - python3 (or $PYTHON) with torch (CUDA), numpy, opencv, pyyaml, safetensors, onnx, onnxruntime, tqdm,
#     matplotlib;
#     featherpose itself is used from this checkout's src/ (not installed);
#   - pycocotools: installed, or its wheel for that machine's Python beside this script
#     (benchmarks/pycocotools-*.whl; git ignores it). Fetch it where there is a network, e.g. for Python 3.12:
#       python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#           --platform manylinux2014_x86_64 -d benchmarks pycocotools==2.0.11
#   - the data, found in this order: $FEATHERPOSE_SHARED, shared/ inside the checkout, ../shared beside it:
#       <shared>/data/lsp/        lsp_train.json, lsp_test.json and their images/ (the FPD runs, PCK@0.2)
#       <shared>/data/coco_mini/  person_keypoints_train2017.json and its images (MoveNet's loader row)
#     e.g. mkdir -p shared/data && cp -r ../shared/data/lsp ../shared/data/coco_mini shared/data/
#
# Budgets (minutes, override with the environment): TEACHER_MINUTES=2, STUDENT_MINUTES=1 (each student; a run
# stops after the epoch that spends its budget: seconds over on a GPU);
# the batch is BATCH=64, the loader WORKERS=12 (of 16 cores). Scores: PCK@0.2 (torso) and its AUC on the
# 1000 LSP test images, scored on the GPU. Record the file in benchmarks/RESULTS.md. What the first run on an H100
# taught (RESULTS.md, "GPU check"): scoring the 8x256 teacher on the CPU took 80 s (it is on the GPU now), and an
# eager hourglass step costs about 25 ms of CPU time per stack whatever the batch, so small batches leave the GPU
# idle (batch 32 -> 64).
# SPEED=0 skips the training-speed part. SPEED_ARGS and FPD_ARGS are appended to the two scripts' arguments (later ones win); a rehearsal of the whole
# script on a CPU, in about 3 minutes:
#   ALLOW_CPU=1 TEACHER_MINUTES=0.3 STUDENT_MINUTES=0.2 SPEED_ARGS="--batch 4 --steps 1 --loader-batches 1 --workers 1" FPD_ARGS="--teacher 1x16 \
#       --student 1x8 --input-size 64 --batch-size 8 --steps-per-epoch 2 --workers 1" bash benchmarks/gpu_check.sh /tmp/gc
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
out=$(mkdir -p "${1:-$root/gpu_check}" && cd "${1:-$root/gpu_check}" && pwd)
py=${PYTHON:-python3}

fail() { echo "gpu_check: $*" >&2; exit 2; }

for d in ${FEATHERPOSE_SHARED:+"$FEATHERPOSE_SHARED"} "$root/shared" "$root/../shared"; do
    if [ -f "$d/data/lsp/lsp_train.json" ]; then FEATHERPOSE_SHARED=$(cd "$d" && pwd); break; fi
done
for f in data/lsp/lsp_train.json data/lsp/lsp_test.json data/coco_mini/person_keypoints_train2017.json; do
    [ -f "${FEATHERPOSE_SHARED:-/nonexistent}/$f" ] ||
        fail "no $f: lay out data/lsp and data/coco_mini under shared/ in the checkout or ../shared, or set FEATHERPOSE_SHARED"
done
export FEATHERPOSE_SHARED

site="$out/site"  # pycocotools from its wheel, unpacked (a wheel is a zip: no pip needed)
export PYTHONPATH="$root/src:$site${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
if ! "$py" -c "import pycocotools._mask" 2>/dev/null; then
    for wheel in "$here"/pycocotools-*.whl; do
        [ -f "$wheel" ] || fail "pycocotools is missing and no pycocotools-*.whl is beside $0; see the header for how to fetch it"
        rm -rf "$site" && "$py" -m zipfile -e "$wheel" "$site"
        if "$py" -c "import pycocotools._mask" 2>/dev/null; then break; fi
        rm -rf "$site"
    done
    "$py" -c "import pycocotools._mask" 2>/dev/null ||
        fail "no pycocotools-*.whl beside $0 fits $("$py" -V); fetch the one for this Python (see the header)"
fi
"$py" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" || [ -n "${ALLOW_CPU:-}" ] ||
    fail "torch sees no GPU (ALLOW_CPU=1 rehearses the script on the CPU)"

start=$(date +%s)
cd "$here"
# shellcheck disable=SC2086  # SPEED_ARGS / FPD_ARGS are word lists
if [ "${SPEED:-1}" = 1 ]; then
    "$py" train_speed.py --batch 64 --steps 20 --workers 1 2 4 8 ${SPEED_ARGS:-} --out "$out/train_speed.md"
else
    echo "(training speed not measured in this run: SPEED=0)" > "$out/train_speed.md"
fi
"$py" fpd_lsp.py --teacher 8x256 --student 4x128 --input-size 256 --batch-size "${BATCH:-64}" \
    --optim adamw --lr 1e-3 --warmup 100 --epochs 1000 --eval-every 1000 --workers "${WORKERS:-12}" \
    --teacher-minutes "${TEACHER_MINUTES:-2}" --minutes "${STUDENT_MINUTES:-1}" \
    ${FPD_ARGS:-} --runs "$out/runs" --out "$out/fpd_lsp.md"
minutes=$(( ($(date +%s) - start + 59) / 60 ))
{
    echo "# GPU check ($(date -u +%Y-%m-%dT%H:%M:%SZ), $minutes min in all)"
    echo
    cat "$out/train_speed.md"
    echo
    cat "$out/fpd_lsp.md"
} > "$out/gpu_check.md.tmp"
mv "$out/gpu_check.md.tmp" "$out/gpu_check.md"
echo "gpu_check: wrote $out/gpu_check.md ($minutes min)"

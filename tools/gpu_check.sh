#!/usr/bin/env bash
# The checks that need a GPU, as one script for a short lease of a CUDA machine (see README,
# "On a GPU"): the coco-scale benchmark (ResNet-50-FPN, 800x1333, batch 16, fp16 AMP; every
# detector with and without ML/IUR, torchvision's FCOS beside the FCOS preset, inference, Otsu on
# CUDA) and one coco-preset run end to end through torchrun on a generated set laid out as COCO
# (data loading, AMP, MLC switching on, a checkpoint, resume, evaluation with pycocotools).
# Figures and logs go to $OUT (default: gpu-check/).
#   bash tools/gpu_check.sh            # optional wheels to install first: .whl/*.whl
set -uo pipefail
OUT=${OUT:-gpu-check}
mkdir -p "$OUT"
if compgen -G ".whl/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
fi
export PYTHONUNBUFFERED=1 MLC_DATA=${MLC_DATA:-/tmp/mlc-data} MLC_RUNS=${MLC_RUNS:-/tmp/mlc-runs}
export MLC_RESULTS=${MLC_RESULTS:-/tmp/mlc-results}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
python3 -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__)" | tee -a "$OUT/gpu.txt"

echo "== benchmark, coco scale"
start=$(date +%s)
timeout 330 python3 -m mlc bench --scale coco --device cuda --rounds 5 --repeat 3 \
  --detectors fcos fcos_minus retinanet rpn --out "$OUT/bench_coco.json" 2>&1 | tee "$OUT/bench_coco.log"
echo "benchmark: $(( $(date +%s) - start )) s"

echo "== coco preset end to end (generated images laid out as COCO 2017)"
start=$(date +%s)
gen=/tmp/mlc-gen
python3 -m mlc data shapes --out "$gen" --num-train 64 --num-val 16 --image-size 640 || exit 1
mkdir -p "$MLC_DATA/coco/annotations"
for s in train val; do
  ln -sfn "$gen/$s" "$MLC_DATA/coco/${s}2017"
  ln -sf "$gen/annotations/instances_$s.json" "$MLC_DATA/coco/annotations/instances_${s}2017.json"
done
run=(--detector fcos_minus --scale coco --quiet --set ml=true --set iur=true --set pretrained=false
     --set epochs=3 --set 'lr_steps=[2]' --set mlc_start_epoch=1 --set warmup_iters=4)
timeout 150 torchrun --standalone --nproc_per_node 1 -m mlc train "${run[@]}" --stop-after-epoch 1 \
  2>&1 | tee "$OUT/e2e.log"
timeout 150 torchrun --standalone --nproc_per_node 1 -m mlc train "${run[@]}" 2>&1 | tee -a "$OUT/e2e.log"
cp "$MLC_RUNS"/coco/*/log.jsonl "$OUT/e2e_steps.jsonl" 2>/dev/null
echo "end to end: $(( $(date +%s) - start )) s"

#!/usr/bin/env bash
# The checks that need a GPU, as one script for a short lease of a CUDA machine (see README,
# "On a GPU"): the coco-scale benchmark (ResNet-50-FPN, 800x1333, batch 16, fp16 AMP; every
# detector with and without ML/IUR, torchvision's FCOS beside the FCOS preset, inference, Otsu on
# CUDA) and one coco-preset run end to end through torchrun on a generated set laid out as COCO
# (data loading, AMP, MLC switching on, a checkpoint, resume, evaluation with pycocotools).
# Figures and logs go to $OUT (default: gpu-check/).
#   bash tools/gpu_check.sh            # optional wheels to install first: .whl/*.whl
#   CHECKS="otsu bench" BENCH_PARTS="training inference otsu" bash tools/gpu_check.sh
#   CHECKS=e2e E2E_SET="vfl=true" bash tools/gpu_check.sh
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
python3 -c "import torch, torchvision, triton; print('torch', torch.__version__, 'torchvision', torchvision.__version__, 'triton', triton.__version__)" | tee -a "$OUT/gpu.txt"

CHECKS=${CHECKS:-"otsu bench e2e"}  # any of: otsu bench e2e
BENCH_PARTS=${BENCH_PARTS:-"anchor training inference otsu"}

if [[ $CHECKS == *otsu* ]]; then
  echo "== Otsu on CUDA (Triton kernels) against the CPU"
  python3 - <<'PY' 2>&1 | tee "$OUT/otsu_cuda.log"
import torch
from mlc.mutual import otsu_threshold, otsu_threshold_torch
g = torch.Generator().manual_seed(0)
for trial in range(50):
    n, groups = int(torch.randint(1, 60000, (1,), generator=g)), int(torch.randint(1, 900, (1,), generator=g))
    values = torch.rand(n, generator=g) * 10 - 5
    if trial % 2:
        values = (values * 100).round() / 100
    ids = torch.randint(0, groups, (n,), generator=g)
    for dtype in (torch.float32, torch.float64):
        cpu = otsu_threshold(values.to(dtype), ids, groups + 1)
        cuda = otsu_threshold(values.to(dtype).cuda(), ids.cuda(), groups + 1).cpu()
        same = torch.equal(cpu.nan_to_num(7.0), cuda.nan_to_num(7.0))
        if not same:
            print("differs", trial, dtype, (cpu != cuda).sum().item(), "of", groups)
        torch_ops = otsu_threshold_torch(values.to(dtype).cuda(), ids.cuda(), groups + 1).cpu()
        if not torch.equal(cpu.nan_to_num(7.0), torch_ops.nan_to_num(7.0)):
            print("torch ops on CUDA differ", trial, dtype, (cpu != torch_ops).sum().item())
print("Otsu CUDA check done")
PY
fi

if [[ $CHECKS == *bench* ]]; then
  echo "== benchmark, coco scale"
  start=$(date +%s)
  timeout 330 python3 -m mlc bench --scale coco --device cuda --rounds ${ROUNDS:-5} --repeat 3 \
    --detectors fcos fcos_minus retinanet rpn --parts $BENCH_PARTS --out "$OUT/bench_coco.json" \
    2>&1 | tee "$OUT/bench_coco.log"
  echo "benchmark: $(( $(date +%s) - start )) s"
fi

[[ $CHECKS == *e2e* ]] || exit 0
echo "== coco preset end to end (generated images laid out as COCO 2017)"
start=$(date +%s)
gen=/tmp/mlc-gen
python3 -m mlc data shapes --out "$gen" --num-train 64 --num-val 16 --image-size 640 || exit 1
mkdir -p "$MLC_DATA/coco/annotations"
for s in train val; do
  ln -sfn "$gen/$s" "$MLC_DATA/coco/${s}2017"
  ln -sf "$gen/annotations/instances_$s.json" "$MLC_DATA/coco/annotations/instances_${s}2017.json"
done
sets=()  # the variant trained end to end: E2E_SET="tal=true" for TAL, say
for kv in ${E2E_SET:-ml=true iur=true}; do sets+=(--set "$kv"); done
run=(--detector fcos_minus --scale coco --quiet "${sets[@]}" --set pretrained=false
     --set epochs=3 --set 'lr_steps=[2]' --set mlc_start_epoch=1 --set warmup_iters=4)
timeout 150 torchrun --standalone --nproc_per_node 1 -m mlc train "${run[@]}" --stop-after-epoch 1 \
  2>&1 | tee "$OUT/e2e.log"
timeout 150 torchrun --standalone --nproc_per_node 1 -m mlc train "${run[@]}" 2>&1 | tee -a "$OUT/e2e.log"
cp "$MLC_RUNS"/coco/*/log.jsonl "$OUT/e2e_steps.jsonl" 2>/dev/null
echo "end to end: $(( $(date +%s) - start )) s"

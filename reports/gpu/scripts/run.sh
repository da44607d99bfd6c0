#!/bin/bash
# The GPU rows, on the device machine, from the repository root: unpack the teacher, then two grids
# (the study's teacher's size with random weights; the study's settings on the local e5-small teacher).
set -u
START=$(date +%s)
C=.gpu/carry
exec > >(tee -a "$OUT/log.txt") 2>&1
unset ACCELERATE_MIXED_PRECISION
export PYTHONUNBUFFERED=1 MAHACOMPRESS_DATA=$PWD/$C/data HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
date -u; nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || echo "wheels failed"
export PYTHONPATH=$PWD/src:/tmp/site
python3 -c "import torch, transformers, onnxruntime, accelerate, sys; print(sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, 'transformers', transformers.__version__, 'ort', onnxruntime.__version__, 'accelerate', accelerate.__version__, torch.cuda.get_device_name(), 'bf16', torch.cuda.is_bf16_supported())"
python3 -c "import codecarbon; print('codecarbon', codecarbon.__version__)" || echo "codecarbon import failed"
(lscpu; nproc; free -g) > "$OUT/machine.txt" 2>&1
python3 $C/pack.py unpack $C/e5.pack models/e5-trim || exit 1
python3 $C/big.py models/e5-trim models/bert-238m || exit 1
echo "setup done at +$(( $(date +%s) - START )) s"
timeout 170 python3 -m mahacompress reproduce --teacher models/bert-238m --preset $C/paper-size.yaml --out /tmp/run-size
echo "size grid rc=$? at +$(( $(date +%s) - START )) s"
tar czf "$OUT/paper-size.tgz" -C /tmp/run-size --exclude=./models . 2>/dev/null
LEFT=$(( ${BUDGET:-575} - ($(date +%s) - START) ))
echo "e5 grid gets $LEFT s"
timeout $LEFT python3 -m mahacompress reproduce --teacher models/e5-trim --preset $C/paper-e5.yaml --out /tmp/run-e5
echo "e5 grid rc=$? at +$(( $(date +%s) - START )) s"
tar czf "$OUT/paper-e5.tgz" -C /tmp/run-e5 --exclude=./models . 2>/dev/null
nvidia-smi --query-gpu=name,memory.used --format=csv
echo "done at +$(( $(date +%s) - START )) s"

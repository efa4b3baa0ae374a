#!/usr/bin/env bash
# The GPU path end to end, in one command, on a machine with NVIDIA GPUs:
#   1. installs what sepnet needs and the image lacks (never torch or lightning: their
#      installed versions are pinned in the same pip command, so pip keeps them);
#   2. python -m sepnet.train trainer=gpu for 50 optimiser steps (2 validations);
#   3. python -m sepnet.train trainer=ddp on every GPU (trainer.devices=-1), 50 steps;
#   4. python -m sepnet.evaluate and python -m sepnet.separate on cuda with the checkpoint of 2;
#   5. benchmarks/train_speed.py with trainer=gpu's data loaders: examples/s, the share of
#      step time spent waiting for data, and peak GPU memory.
#
#   benchmarks/gpu_smoke.sh                       # installs from the package index
#   benchmarks/gpu_smoke.sh --wheels /wheels      # offline: pip --no-index --find-links /wheels
#   benchmarks/gpu_smoke.sh --wheels /wheels --no-deps   # exactly the named wheels, no resolution
#   benchmarks/gpu_smoke.sh --dry-run             # print every command, one per line; run nothing
#
# Options: --out DIR (default outputs/gpu_smoke/<time>), --steps N (default 50),
# --batch-size N (per GPU, default 16). PYTHON=... picks the interpreter (default python).
# Not run by CI (no GPU there); see benchmarks/README.md.
set -euo pipefail

usage() { sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; }

DRY_RUN=0
WHEELS=""
NO_DEPS=0
OUT=""
STEPS=50
BATCH=16
while (($#)); do
  case "$1" in
    --dry-run) DRY_RUN=1 ;;
    --wheels) WHEELS="${2:?--wheels needs a folder}"; shift ;;
    --no-deps) NO_DEPS=1 ;;
    --out) OUT="${2:?--out needs a folder}"; shift ;;
    --steps) STEPS="${2:?--steps needs a number}"; shift ;;
    --batch-size) BATCH="${2:?--batch-size needs a number}"; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "gpu_smoke.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done
if [[ -n "$WHEELS" && ! -d "$WHEELS" ]]; then
  echo "gpu_smoke.sh: --wheels $WHEELS is not a folder; pass the folder holding the .whl files" >&2
  exit 2
fi
if ((NO_DEPS)) && [[ -z "$WHEELS" ]]; then
  echo "gpu_smoke.sh: --no-deps installs carried wheels as they are; use it with --wheels DIR" >&2
  exit 2
fi

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"  # sepnet and conf/ from this checkout, no install needed
PYTHON="${PYTHON:-python}"
OUT="${OUT:-outputs/gpu_smoke/$(date +%Y-%m-%d_%H-%M-%S)}"

# Print a command (shell-quoted, one line), then run it unless --dry-run.
run() {
  local line="" arg
  for arg in "$@"; do line+="$(printf '%q' "$arg") "; done
  if ((DRY_RUN)); then echo "${line% }"; else echo "+ ${line% }" >&2; "$@"; fi
}

# What the entry points import, as module:pip requirement (the same bounds as pyproject.toml).
REQUIREMENTS=(
  "hydra:hydra-core>=1.3.2,<1.4"
  "omegaconf:omegaconf>=2.3,<2.4"
  "numpy:numpy>=1.26"
  "soundfile:soundfile>=0.12.1"
  "soxr:soxr>=0.3.7"
  "matplotlib:matplotlib>=3.8"
  "yaml:pyyaml>=6"
  "museval:museval>=0.4.1"
  "wandb:wandb>=0.31,<0.32"
)

# The installed version of a distribution, or nothing (importlib.metadata: nothing is imported).
installed_version() {
  "$PYTHON" -c 'import importlib.metadata as m, sys
try: print(m.version(sys.argv[1]))
except m.PackageNotFoundError: pass' "$1"
}

TORCH="$(installed_version torch)"
LIGHTNING="$(installed_version lightning)"
if [[ -z "$TORCH" || -z "$LIGHTNING" ]]; then
  echo "gpu_smoke.sh: $PYTHON has no torch or no lightning; use an image with a CUDA build of torch and lightning" >&2
  exit 2
fi
# The requirements whose module cannot be found (find_spec: nothing is imported).
read -r -a MISSING <<<"$("$PYTHON" -c 'import importlib.util, sys
print(" ".join(spec for module, _, spec in (a.partition(":") for a in sys.argv[1:]) if importlib.util.find_spec(module) is None))' "${REQUIREMENTS[@]}")"

if ((${#MISSING[@]})); then
  PIP=(-m pip install)
  [[ -n "$WHEELS" ]] && PIP+=(--no-index --find-links "$WHEELS")
  ((NO_DEPS)) && PIP+=(--no-deps)
  # torch and lightning named at their installed versions: pip keeps them, and refuses
  # (instead of replacing torch) if a package wanted another version.
  run "$PYTHON" "${PIP[@]}" "torch==$TORCH" "lightning==$LIGHTNING" "${MISSING[@]}"
  if ((!DRY_RUN)) && [[ "$(installed_version torch)" != "$TORCH" ]]; then
    echo "gpu_smoke.sh: pip changed torch from $TORCH to $(installed_version torch); restore the image's torch" >&2
    exit 1
  fi
fi

# A check of the machine, like the two above (not a step, so --dry-run does not print it).
if ((!DRY_RUN)); then
  "$PYTHON" -c 'import sys, torch
n = torch.cuda.device_count()
if not n: sys.exit(f"gpu_smoke.sh: torch {torch.__version__} sees no CUDA GPU; run this on a GPU machine")
print(f"gpu_smoke.sh: {n} GPU(s), {torch.cuda.get_device_name(0)}, torch {torch.__version__}", file=sys.stderr)'
fi

# Half the steps per epoch on one GPU: the run is 2 epochs, each validated, so best.ckpt exists.
EXAMPLES=$(((STEPS > 1 ? STEPS / 2 : 1) * BATCH))
TRAIN_GPU="$OUT/train_gpu"
run "$PYTHON" -m sepnet.train trainer=gpu "trainer.max_steps=$STEPS" "data.batch_size=$BATCH" \
  "data.examples_per_epoch=$EXAMPLES" logger=csv "hydra.run.dir=$TRAIN_GPU"
# Every GPU of the machine; Lightning relaunches this command once per extra GPU.
run "$PYTHON" -m sepnet.train trainer=ddp trainer.devices=-1 "trainer.max_steps=$STEPS" "data.batch_size=$BATCH" \
  "data.examples_per_epoch=$EXAMPLES" logger=csv "paths.outputs_root=$OUT" run_name=train_ddp

CKPT="$TRAIN_GPU/checkpoints/best.ckpt"
run "$PYTHON" -m sepnet.evaluate "ckpt=$CKPT" split=test eval.device=cuda "hydra.run.dir=$OUT/evaluate"
run "$PYTHON" -m sepnet.separate "ckpt=$CKPT" input=data/synthetic/test "out=$OUT/separated" separate.device=cuda \
  "hydra.run.dir=$OUT/separate"

# The figures: training steps of the default model in bf16 autocast, batches from trainer=gpu's loaders.
run "$PYTHON" benchmarks/train_speed.py trainer=gpu --models crnn --device cuda --precision bf16 --data \
  --batch-size "$BATCH" --chunk-seconds 1.0 --steps "$STEPS" --warmup 5

((DRY_RUN)) || echo "gpu_smoke.sh: done; outputs in $OUT" >&2

# sepnet: `make train` trains sepnet's recipe on the embedded data; `make test` runs the tests;
# `make reproduce` runs the research log's chain (train, fine-tune, merge, sweep, evaluate) at a smoke budget.
# Both create .venv (torch pinned to the CPU wheel 2.13.0) and install sepnet into it first.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
ARGS ?=

.PHONY: train test lint reproduce install system-deps clean

install: $(INSTALLED)

$(INSTALLED): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
# The RoFormer reference (dev extra) without pip resolving torch: --no-deps, then its small dependencies by name.
	$(BIN)/python -m pip install --quiet --no-deps bs-roformer==1.2.4 einops rotary-embedding-torch beartype einx \
		frozendict hyper-connections pope-pytorch torch-einops-utils
	$(BIN)/python -m pip install --quiet -e '.[dev,all]'  # all: every extra (wandb, tensorboard, optuna, slurm) the tests use
# Open-Unmix for benchmarks/peer.py and separate_speed.py, and HTDemucs for peer.py --sample-rate 44100, without their
# declared torchaudio (see pyproject's peer extra); demucs' own imports by name (dora-search's without its launcher tree).
	$(BIN)/python -m pip install --quiet --no-deps openunmix==1.3.0 'tqdm>=4'
	$(BIN)/python -m pip install --quiet --no-deps demucs==4.0.1 julius==0.2.8 dora-search==0.1.13 treetable==0.2.6 \
		retrying==1.4.2
	touch $@

# ffmpeg/ffprobe: museval imports musdb -> stempeg, which refuses to import without them.
# chromium: the listening report's test renders report.html headless.
system-deps:
	@missing=""; \
	command -v ffmpeg >/dev/null && command -v ffprobe >/dev/null || missing="$$missing ffmpeg"; \
	command -v chromium >/dev/null || command -v chromium-browser >/dev/null || missing="$$missing chromium"; \
	if [ -z "$$missing" ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	else echo "sepnet needs$$missing: install it (e.g. sudo apt-get install$$missing)"; exit 1; fi

# The main job is sepnet's recipe at full band, 44.1 kHz (experiments/sepnet_fullband.yaml); ARGS add overrides to it.
# RECIPE=experiment=sepnet_band_split trains it at the log's 22.05 kHz (make train's from 2026-12-02 to 2026-12-06);
# RECIPE=experiment=sepnet_recipe the lean U-Net recipe (before that); RECIPE= conf/train.yaml's defaults: the log's CRNN.
RECIPE ?= experiment=sepnet_fullband
train: $(INSTALLED)
	$(BIN)/python -m sepnet.train $(RECIPE) $(ARGS)

# The research log's whole chain at the smoke budget (ARGS='reproduce.budget=full' for the real one).
reproduce: $(INSTALLED)
	$(BIN)/python -m sepnet.reproduce $(ARGS)

# Lint first (a second), then the whole suite in two worker processes, one test file at a time each
# (pytest-xdist: 7.7 minutes on 2 idle cores instead of 11; many tests wait on subprocess start-up).
test: $(INSTALLED) system-deps lint
	$(BIN)/python -m pytest -q -n 2 --dist loadfile $(ARGS)

lint: $(INSTALLED)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) outputs multirun .pytest_cache

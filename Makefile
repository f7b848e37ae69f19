# Every target sets itself up on a fresh clone: `make demo` and `make test` are all a new user needs.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup weights demo test test-slow bench bench-quick bench-video-hd bench-prints gpu-check lint clean

setup: $(STAMP) weights

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

weights: $(STAMP)
	$(BIN)/batch-style weights

demo: setup
	$(BIN)/batch-style run jobs/demo.yaml

test: setup
	$(BIN)/python -m pytest -q

test-slow: setup
	$(BIN)/python -m pytest -q -m slow

bench: setup
	$(BIN)/python -m benchmarks.bench
	$(BIN)/python -m benchmarks.fixed_cost
	$(BIN)/python -m benchmarks.bench_video

bench-quick: setup
	$(BIN)/python -m benchmarks.bench --pairs tubingen+starry-night --methods adam lbfgs lbfgs-mixed --steps 100

# HD video frames (docs/video.md, "HD frames"): warm frames above base_size three ways at 320 px,
# then a 720p clip's first 3 frames with the defaults: s/frame and peak memory; bench-results/video-hd.md.
bench-video-hd: setup
	$(BIN)/python -m benchmarks.video_hd

# Prints (docs/prints.md): memory and time per step by size, whole and in tiles; tiled against
# whole; a finished 2048-px print; the look of a print made from base_size, per pair (tuned on,
# judged); bench-results/prints.md.
bench-prints: setup
	$(BIN)/python -m benchmarks.prints

# On a GPU machine, after `make setup` and `.venv/bin/pip install -e '.[gpu]'`: doctor, a
# stylization pinned to each GPU, per-step times and GPU memory, in bench-results/gpu-check.md.
gpu-check: setup
	$(BIN)/python -m benchmarks.gpu_check

lint: $(STAMP)
	$(BIN)/ruff check batch_style tests benchmarks
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) out bench-results

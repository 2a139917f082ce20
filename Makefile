# cxr-cascade: every job from one command. Each target builds .venv/ from requirements.txt
# the first time (Python >= 3.11 and make are all a fresh clone needs).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
CLI    := $(BIN)/cxr-cascade
export KERAS_BACKEND ?= tensorflow
export TF_CPP_MIN_LOG_LEVEL ?= 2

# Where `make demo` writes; small phantom sizes so it runs on a 2-core laptop.
DEMO_DIR ?= build/demo
DEMO_N   ?= 900
DEMO_SIZE ?= 256

.PHONY: venv test test-all demo phantoms clean

$(STAMP): requirements.txt setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip "setuptools>=64" wheel
	$(BIN)/python -m pip install -q -r requirements.txt
	# compat mode puts the repository root on sys.path, so `pipelines` and `experiments`
	# import from the checkout without being published under those names.
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e . --config-settings editable_mode=compat
	touch $(STAMP)

venv: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-all: $(STAMP)
	$(BIN)/python -m pytest -q -m ""

phantoms: $(STAMP)
	$(CLI) data phantoms --out $(DEMO_DIR)/phantoms --n $(DEMO_N) --size $(DEMO_SIZE) --seed 0

# The demo trains all three networks from scratch every time: an existing run is never
# overwritten by `train` (by design, for real runs), so the demo removes its own
# $(DEMO_DIR)/runs first instead of resuming; resuming would reuse a finished run and
# re-report old numbers. Each stage must reach DEMO_MIN_ACC test accuracy (U-Net: mean IoU).
DEMO_MIN_ACC ?= 0.90
demo: phantoms
	$(CLI) data check $(DEMO_DIR)/phantoms/chest_xray --format kermany --strict
	$(CLI) data check $(DEMO_DIR)/phantoms/covid-chestxray-dataset --format ieee8023 --strict
	$(CLI) data check $(DEMO_DIR)/phantoms/lung-masks --format lung-masks --strict
	rm -rf $(DEMO_DIR)/runs
	$(MAKE) train-chains DATA= TRAIN_RUNS=$(DEMO_DIR)/runs PHANTOM_DIR=$(DEMO_DIR)/phantoms
	$(BIN)/python -c "import json, sys; \
	rs = {s: json.load(open('$(DEMO_DIR)/runs/' + s + '/results.json')) for s in ('unet', 'stage1', 'stage2')}; \
	sc = {s: r['mean_iou'] if s == 'unet' else r['accuracy'] for s, r in rs.items()}; \
	[print(f'demo {s}: test ' + ('mean IoU' if s == 'unet' else 'accuracy') + f' {v:.3f}') for s, v in sc.items()]; \
	low = [s for s, v in sc.items() if v < $(DEMO_MIN_ACC)]; \
	sys.exit(f'demo: below $(DEMO_MIN_ACC): {low}' if low else 0)"

clean:
	rm -rf build runs

# --- export for TF Serving (issue 7): `make export RUNS="runs/stage1 runs/stage2 runs/unet"`
RUNS ?=
MODELS_DIR ?= models
EXPORT_ARGS ?=
BENCH_SERVING_ARGS ?=
.PHONY: export bench-serving
export: $(STAMP)
	@test -n "$(RUNS)" || { echo 'make export: set RUNS="RUN_DIR ..." (training run directories)'; exit 2; }
	$(CLI) export $(RUNS) --out $(MODELS_DIR) $(EXPORT_ARGS)

# images/s and p50/p95 latency of the cascade SavedModel on PNG bytes, batch 1 and 16;
# BENCH_SERVING_ARGS=--quick for tiny networks.
bench-serving: $(STAMP)
	mkdir -p $(BENCH_DIR)
	$(BIN)/python benchmarks/bench_serving.py --json-out $(BENCH_DIR)/serving.json $(BENCH_SERVING_ARGS)

bench-pipeline: $(STAMP)
	$(BIN)/python benchmarks/bench_pipeline.py --json-out $(BENCH_DIR)/pipeline.json $(BENCH_PIPELINE_ARGS)

# --- evaluation, Grad-CAM, shortcut audit (issue 6)
# make evaluate RUN=runs/stage1 [STAGE2=runs/stage2] [EVAL_ARGS="--data test.csv --unet runs/unet"]
# make gradcam RUN=runs/stage1 IMAGES="a.png b.png" [HEATMAPS=heatmaps]
# make audit RUN=runs/stage2 [AUDIT_ARGS="--unet runs/unet"]
RUN ?=
STAGE2 ?=
IMAGES ?=
HEATMAPS ?= heatmaps
EVAL_ARGS ?=
GRADCAM_ARGS ?=
AUDIT_ARGS ?=
.PHONY: evaluate gradcam audit
evaluate: $(STAMP)
	@test -n "$(RUN)" || { echo 'make evaluate: set RUN=RUN_DIR (and STAGE2=RUN_DIR for the cascade)'; exit 2; }
	$(CLI) evaluate $(RUN) $(if $(STAGE2),--stage2 $(STAGE2)) $(EVAL_ARGS)

gradcam: $(STAMP)
	@test -n "$(RUN)" -a -n "$(IMAGES)" || { echo 'make gradcam: set RUN=RUN_DIR IMAGES="a.png ..."'; exit 2; }
	$(CLI) gradcam $(RUN) $(IMAGES) --out $(HEATMAPS) $(GRADCAM_ARGS)

audit: $(STAMP)
	@test -n "$(RUN)" || { echo 'make audit: set RUN=RUN_DIR'; exit 2; }
	$(CLI) audit $(RUN) $(AUDIT_ARGS)

# Every bench prints its table and writes JSON to $(BENCH_DIR); `make bench` runs them all at a
# small size (--quick, a few minutes on 2 cores) and prints the README tables
# (benchmarks/report.py; `make bench-readme` rewrites the README's <!-- bench:NAME --> sections
# from the JSON files, so the tables are never typed by hand).
BENCH_DIR ?= build/bench
BENCH_CLAHE_ARGS ?=
BENCH_PIPELINE_ARGS ?=
.PHONY: bench bench-readme bench-clahe
bench: $(STAMP)
	$(BIN)/python benchmarks/bench_clahe.py --quick --json-out $(BENCH_DIR)/clahe.json
	$(BIN)/python benchmarks/bench_pipeline.py --quick --json-out $(BENCH_DIR)/pipeline.json
	$(BIN)/python benchmarks/bench_models.py --quick --no-jit --models keras_resnet50,resnet50,seme_resnet50 \
		--precisions float32 bfloat16 --json-out $(BENCH_DIR)/models.json
	$(BIN)/python benchmarks/bench_serving.py --quick --json-out $(BENCH_DIR)/serving.json
	$(BIN)/python benchmarks/bench_clahe_ops.py --quick
	$(BIN)/python benchmarks/report.py $(BENCH_DIR)

# The accelerator's table (CLAHE / rotation layers on an H200) is rendered from its committed JSON.
bench-readme: $(STAMP)
	$(BIN)/python benchmarks/report.py $(BENCH_DIR) --readme README.md
	$(BIN)/python benchmarks/report.py benchmarks/results/h200 --readme README.md

bench-clahe: $(STAMP)
	$(BIN)/python benchmarks/bench_clahe.py --json-out $(BENCH_DIR)/clahe.json $(BENCH_CLAHE_ARGS)

# CLAHE and rotation as keras.ops layers on the backend's device vs OpenCV on the host (issue 15,
# goal 5). The H200 run: KERAS_BACKEND=jax python benchmarks/bench_clahe_ops.py --images DIR
# --model --json-out benchmarks/results/h200/clahe_ops.json (DIR: 8 ieee8023 radiographs).
BENCH_CLAHE_OPS_ARGS ?=
.PHONY: bench-clahe-ops
bench-clahe-ops: $(STAMP)
	$(BIN)/python benchmarks/bench_clahe_ops.py --json-out $(BENCH_DIR)/clahe_ops.json $(BENCH_CLAHE_OPS_ARGS)

# Training img/s of our builders vs keras.applications and SE/SEME vs plain (any Keras backend:
# KERAS_BACKEND=jax make bench-models), float32 and bfloat16 in one run. CPU run as in issue 15:
# BENCH_MODELS_ARGS="--size 224 --batch 8 --steps 5 --no-jit"; smoke run: add --quick.
BENCH_MODELS = keras_resnet50,resnet50,seme_resnet50
BENCH_MODELS_ARGS ?=
.PHONY: bench-models
bench-models: $(STAMP)
	$(BIN)/python benchmarks/bench_models.py --models $(BENCH_MODELS) --precisions float32 bfloat16 \
		--json-out $(BENCH_DIR)/models.json $(BENCH_MODELS_ARGS)

# The shortcut audit proving itself on phantoms: marker (flagged), clean control and lung-masked
# models (not flagged), DIR/summary.json; 83-156 s per seed with AUDIT_DEMO_ARGS=--power on 2
# shared cores (experiments/results/audit-demo/), about half that without.
AUDIT_DEMO_DIR ?= build/audit-demo
AUDIT_DEMO_ARGS ?=
.PHONY: audit-demo
audit-demo: $(STAMP)
	$(BIN)/python -m cxr_cascade.audit.demo --out $(AUDIT_DEMO_DIR) $(AUDIT_DEMO_ARGS)

# --- training (issue 5). `make train-stage1 DATA=/data/chest_xray [TRAIN_ARGS="--set image_size=224"]`
# trains the paper's SEME-ResNet50 (table4_resnet50_seme); `make train-stage2 DATA=/data/covid-chestxray-dataset`
# SEME-DenseNet169 (table5_seme_densenet169, segmented copies by the U-Net in UNET_RUN);
# `make train-unet DATA=/data/lung-masks` the U-Net (unet_lungs). Without DATA each target trains the
# demo-scale config (demo_stage1 / demo_stage2 / demo_unet) on the phantom set, generated first if absent,
# so it runs on any machine. Runs go to $(TRAIN_RUNS)/{stage1,stage2,unet}; an existing run is never
# overwritten (continue it with TRAIN_ARGS=--resume, or choose another TRAIN_RUNS).
DATA ?=
TRAIN_ARGS ?=
PHANTOM_DIR ?= $(DEMO_DIR)/phantoms
TRAIN_RUNS ?= $(if $(DATA),runs,$(DEMO_DIR)/runs)
UNET_RUN ?= $(TRAIN_RUNS)/unet
STAGE1_EXP ?= $(if $(DATA),table4_resnet50_seme,demo_stage1)
STAGE2_EXP ?= $(if $(DATA),table5_seme_densenet169,demo_stage2)
UNET_EXP ?= $(if $(DATA),unet_lungs,demo_unet)
TRAIN_DATA = $(foreach d,$(DATA),--data $(d))
.PHONY: train-stage1 train-stage2 train-unet

$(PHANTOM_DIR)/phantoms.csv: | $(STAMP)
	$(CLI) data phantoms --out $(PHANTOM_DIR) --n $(DEMO_N) --size $(DEMO_SIZE) --seed 0

train-stage1: $(STAMP) $(if $(DATA),,$(PHANTOM_DIR)/phantoms.csv)
	$(CLI) train $(STAGE1_EXP) $(if $(DATA),$(TRAIN_DATA),--data $(PHANTOM_DIR)/chest_xray) --run-dir $(TRAIN_RUNS)/stage1 $(TRAIN_ARGS)

train-unet: $(STAMP) $(if $(DATA),,$(PHANTOM_DIR)/phantoms.csv)
	$(CLI) train $(UNET_EXP) $(if $(DATA),$(TRAIN_DATA),--data $(PHANTOM_DIR)/lung-masks) --run-dir $(TRAIN_RUNS)/unet $(TRAIN_ARGS)

train-stage2: $(STAMP) $(if $(DATA),,$(PHANTOM_DIR)/phantoms.csv)
	$(CLI) train $(STAGE2_EXP) $(if $(DATA),$(TRAIN_DATA),--data $(PHANTOM_DIR)/covid-chestxray-dataset) --unet $(UNET_RUN) --run-dir $(TRAIN_RUNS)/stage2 $(TRAIN_ARGS)

# train-chains: the three trainings as two chains side by side, one TensorFlow thread each
# (CHAIN_THREADS): stage 1 on one core; the U-Net and then stage 2 (which needs the U-Net's masks)
# on the other. On 2 cores this beats three 2-thread runs in a row (`make demo`, `train-release`).
# STAGE1_DATA / UNET_DATA / STAGE2_DATA: each chain's DATA (empty: the phantom set).
CHAIN_THREADS ?= 1
CHAIN_ENV = TF_NUM_INTRAOP_THREADS=$(CHAIN_THREADS) TF_NUM_INTEROP_THREADS=$(CHAIN_THREADS)
STAGE1_DATA ?=
UNET_DATA ?=
STAGE2_DATA ?=
.PHONY: train-chains chain-stage1 chain-stage2
train-chains: $(STAMP)
	$(MAKE) -j2 chain-stage1 chain-stage2

chain-stage1: $(STAMP)
	$(CHAIN_ENV) $(MAKE) train-stage1 DATA=$(STAGE1_DATA)

chain-stage2: $(STAMP)
	$(CHAIN_ENV) $(MAKE) train-unet DATA=$(UNET_DATA)
	$(CHAIN_ENV) $(MAKE) train-stage2 DATA=$(STAGE2_DATA)

# --- release (issue 11): the release experiments on the real data, then evaluation of each run
# (CIs into release.json), float16 release, verification.
#   make train-release [SHARED_DATA=../shared/data]   trains unet -> stage2 and stage1 into RELEASE_RUNS
#   make release                                       evaluates and audits the runs, writes RELEASE_DIR
#   make evaluate-release                              evaluates the release end to end into RELEASE_EVAL
# train-release trains the release experiments with train-chains (about 1 h 40 min here; the
# release experiments' headers give the measured speeds).
# The release's split manifests (splits.csv) hold paths relative to the release folder.
SHARED_DATA ?= ../shared/data
RELEASE_RUNS ?= runs/release
RELEASE_DIR ?= releases/v1
RELEASE_EVAL ?= experiments/results/release-v1
.PHONY: train-release release evaluate-release
train-release: $(STAMP)
	$(MAKE) train-chains TRAIN_RUNS=$(RELEASE_RUNS) STAGE1_DATA=$(SHARED_DATA)/chest_xray \
		UNET_DATA=$(SHARED_DATA)/lung-masks STAGE2_DATA=$(SHARED_DATA)/covid-chestxray-dataset \
		STAGE1_EXP=release_stage1_224 UNET_EXP=release_unet_256 STAGE2_EXP=release_stage2_224

release: $(STAMP)
	$(CLI) evaluate $(RELEASE_RUNS)/unet
	$(CLI) evaluate $(RELEASE_RUNS)/stage1
	$(CLI) evaluate $(RELEASE_RUNS)/stage2 --by source
	$(CLI) audit $(RELEASE_RUNS)/stage1 --unet $(RELEASE_RUNS)/unet
	$(CLI) audit $(RELEASE_RUNS)/stage2 --unet $(RELEASE_RUNS)/unet
	$(CLI) release build --unet $(RELEASE_RUNS)/unet --stage1 $(RELEASE_RUNS)/stage1 \
		--stage2 $(RELEASE_RUNS)/stage2 --out $(RELEASE_DIR)
	$(CLI) release verify $(RELEASE_DIR)

# U-Net mean IoU / lung IoU / Dice on its test split; stage 1 on Kermany's official test (624);
# stage 2 on its patient-grouped test split by source; the 4-class cascade on the union of both
# test splits under the paper's gate rule (and the soft rule beside it); patient-bootstrap CIs,
# confusion matrices and ROC curves in each folder's report.md and figures/.
evaluate-release: $(STAMP)
	$(CLI) release verify $(RELEASE_DIR)
	$(CLI) evaluate $(RELEASE_DIR)/unet --out $(RELEASE_EVAL)/unet
	$(CLI) evaluate $(RELEASE_DIR)/stage1 --out $(RELEASE_EVAL)/stage1
	$(CLI) evaluate $(RELEASE_DIR)/stage2 --by source --out $(RELEASE_EVAL)/stage2
	$(CLI) evaluate $(RELEASE_DIR)/stage1 --stage2 $(RELEASE_DIR)/stage2 --unet $(RELEASE_DIR)/unet \
		--rule gate --by source --out $(RELEASE_EVAL)/cascade

# --- the GPU step (cxr_cascade/device; README "Training on the GPU machine"): the release's
# U-Net, stage 1 and stage 2 trained on the remote accelerator in two runs of at most 9 minutes.
#   make device-wheels                     download keras/namex/optree wheels for the remote (network)
#   make train-device [DEVICE_RUN=a]       pack run a (U-Net + stage 1) into build/device/a
#   make train-device DEVICE_RUN=b         pack run b (stage 2 + the rebuilt U-Net) into build/device/b
#   make train-device-rebuild FROM=DIR     verify a run's shards in DIR, rebuild DEVICE_RUNS/<stage>
#   make train-device DRY_RUN=1            all of it here at toy scale (phantoms, 32 px, 2 epochs)
# The device command for a pack: bash tools/device_train.sh build/device/RUN (carry build/device/RUN).
DEVICE_RUN ?= a
DEVICE_DIR ?= build/device
DEVICE_RUNS ?= runs/device
DEVICE_WHEELS ?= $(DEVICE_DIR)/wheels
DEVICE_ARGS ?=
DRY_RUN ?=
FROM ?=
DEVICE_PY = PYTHONPATH=$(CURDIR)$${PYTHONPATH:+:$$PYTHONPATH} $(BIN)/python -m cxr_cascade.device
.PHONY: train-device train-device-rebuild device-wheels
train-device: $(STAMP)
ifeq ($(DRY_RUN),1)
	$(DEVICE_PY) dry-run --work $(DEVICE_DIR)/dry-run $(DEVICE_ARGS)
else
	@test -d $(DEVICE_WHEELS) || { echo "make train-device: no $(DEVICE_WHEELS); run make device-wheels first"; exit 2; }
	$(DEVICE_PY) pack $(DEVICE_RUN) --data-root $(SHARED_DATA) --out $(DEVICE_DIR)/$(DEVICE_RUN) \
		--wheels $(DEVICE_WHEELS) $(if $(filter b,$(DEVICE_RUN)),--unet-run $(DEVICE_RUNS)/unet) $(DEVICE_ARGS)
	@echo "device command: bash tools/device_train.sh $(DEVICE_DIR)/$(DEVICE_RUN)   (carry: $(DEVICE_DIR)/$(DEVICE_RUN), timeout_s 560)"
endif

train-device-rebuild: $(STAMP)
	@test -n "$(FROM)" || { echo 'make train-device-rebuild: set FROM=DIR (the folder the shards came back to)'; exit 2; }
	$(DEVICE_PY) rebuild $(FROM) --runs $(DEVICE_RUNS)

# The wheels the remote lacks (its Python 3.12 has JAX, NumPy, Pillow, h5py, rich, ml-dtypes;
# not Keras nor, perhaps, absl-py): the versions of requirements-lock.txt. A build step: needs the network, once.
device-wheels:
	mkdir -p $(DEVICE_WHEELS)
	$(PYTHON) -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
		--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
		-d $(DEVICE_WHEELS) keras==3.15.1 namex==0.1.0 optree==0.20.0 absl-py==2.5.1

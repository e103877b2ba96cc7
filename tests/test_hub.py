"""Pushing to the hub (lib/hub.py): what stops a push before it starts, and the model card.
The push of a real finished run (dry run, and against an unreachable hub) is tested on the
smoke chain in test_chain.py."""
import subprocess

import pytest

from conftest import PYTHON, ROOT
from lib.hub import HubError, base_model_id, checked_repo_id, hub_token, model_card, upload_plan
from lib.params import ParamsError, load_params


def test_token_comes_from_the_environment_only():
    with pytest.raises(HubError, match="HF_TOKEN"):
        hub_token({})
    with pytest.raises(HubError, match="HF_TOKEN"):
        hub_token({"HF_TOKEN": "  "})
    assert hub_token({"HF_TOKEN": "hf_x"}) == "hf_x"


@pytest.mark.parametrize("repo_id, problem", [("", "hub.repo_id is empty"), ("no-slash", "must look like"),
                                              ("a/b/c", "must look like"), ("me/has space", "must look like")])
def test_repo_id_problems_name_the_params_file_and_key(repo_id, problem):
    params = load_params("pg", "smoke", [f"hub.repo_id={repo_id}"] if repo_id else None)
    with pytest.raises(HubError, match=problem) as err:
        checked_repo_id(params)
    assert "params/pg.yaml" in str(err.value)
    assert checked_repo_id(load_params("pg", "smoke", ["hub.repo_id=me/pg-smollm2"])) == "me/pg-smollm2"


def test_unknown_gguf_level_is_a_params_error():
    with pytest.raises(ParamsError, match="hub.gguf_levels"):
        load_params("pg", "smoke", ["hub.gguf_levels=[q9_x]"])
    assert load_params("pg", "smoke", ["hub.gguf_levels=[f16, q4_k_m-imatrix]"])["hub"]["gguf_levels"] == [
        "f16", "q4_k_m-imatrix"]


def test_a_run_whose_quantize_stage_has_not_finished_is_not_pushed(run_env):
    with pytest.raises(FileNotFoundError, match="06_quantize has not finished"):
        upload_plan("pg", "embedded:smollm2-135m-instruct", ["q4_k_m"])


def test_if_enabled_does_nothing_when_push_is_off(run_env):
    result = subprocess.run([PYTHON, "-m", "lib.hub", "pg", "--profile", "smoke", "--if-enabled"], cwd=ROOT,
                            env=run_env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout == "" and result.stderr == ""
    on = subprocess.run([PYTHON, "-m", "lib.hub", "pg", "--profile", "smoke", "--if-enabled", "--set", "hub.push=true"],
                        cwd=ROOT, env=run_env, capture_output=True, text=True, timeout=120)
    assert on.returncode == 2 and "hub.repo_id is empty" in on.stderr


def test_model_card_carries_the_runs_numbers():
    params = load_params("trump", "smoke")
    quants = {"f16": {"file": "trump-f16.gguf", "size_mb": 258.3, "ppl": 15.41, "kld": None, "top1": None},
              "quants": {"q4_k_m": {"file": "trump-q4_k_m.gguf", "size_mb": 100.6, "ppl": 15.9, "kld": 0.0331,
                                    "top1": 0.887}},
              "modelfile_from": "trump-q4_k_m.gguf"}
    evaluation = {"systems": ["base_prompted", "chat"], "identity_rate": {"base_prompted": 0.467, "chat": 0.633},
                  "style_score": {"base_prompted": 0.0, "chat": None}, "heldout_ppl": {"base_prompted": 20.09,
                                                                                        "chat": 15.42}}
    card = model_card(params, "me/trump", quants, evaluation)
    assert card.startswith("---\nbase_model: HuggingFaceTB/SmolLM2-135M-Instruct\n")
    assert "| trump-q4_k_m.gguf | 101 | 15.90 | 0.0331 | 0.887 |" in card
    assert "| chat | 0.63 | – | 15.42 |" in card  # too few words for a style score
    assert "ollama run hf.co/me/trump:Q4_K_M" in card and "Donald Trump" in card
    assert "## Evaluation" not in model_card(params, "me/trump", quants, None)


def test_base_model_id():
    assert base_model_id("unsloth/llama-3-8b-bnb-4bit") == "unsloth/llama-3-8b-bnb-4bit"
    assert base_model_id("embedded:smollm2-135m-instruct") == "HuggingFaceTB/SmolLM2-135M-Instruct"

"""Params: merge order, and every kind of bad input stopping with one clear message."""
import shutil
import subprocess

import pytest
import yaml

from conftest import PYTHON, ROOT
from lib.params import ParamsError, load_params


def copy_params(tmp_path):
    folder = tmp_path / "params"
    shutil.copytree(ROOT / "params", folder)
    return folder


def edit_yaml(path, change):
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data))


def test_merge_order_defaults_persona_profile_overrides():
    p = load_params("pg", "smoke", ["train_completion.max_steps=7"])
    assert p["persona"]["name"] == "Paul Graham"                       # persona file
    assert p["split"]["heldout_rule"] == "newest"                      # persona file
    assert p["split"]["max_tokens"] == 256                             # smoke profile beats default 1024
    assert p["train_completion"]["max_steps"] == 7                     # override beats profile
    assert p["train_completion"]["lora_r"] == 16                       # default
    assert p["run"] == {"persona": "pg", "profile": "smoke"}


def test_auto_profile_is_cpu_without_cuda():
    assert load_params("trump", "auto")["run"]["profile"] == "cpu"


def test_int_accepted_for_float_and_override_values_are_typed():
    p = load_params("pg", "cpu", ["scrape.delay_s=2", "model.load_in_4bit=false", "qa.base_url=http://x/v1"])
    assert p["scrape"]["delay_s"] == 2.0 and isinstance(p["scrape"]["delay_s"], float)
    assert p["model"]["load_in_4bit"] is False
    assert p["qa"]["base_url"] == "http://x/v1"


@pytest.mark.parametrize("change, message", [
    (lambda d: d["split"].update(max_tokenz=5), "unknown key 'split.max_tokenz'"),
    (lambda d: d.update(trainig={"x": 1}), "unknown section 'trainig'"),
    (lambda d: d["split"].update(max_tokens="big"), "split.max_tokens must be int, got str"),
    (lambda d: d["split"].update(heldout_rule="oldest"), "split.heldout_rule must be one of newest, random"),
    (lambda d: d["scrape"].update(snapshot_dir="data/nowhere"), "scrape.snapshot_dir is not a folder"),
    (lambda d: d["evaluate"].update(questions_file="data/eval/missing.json"), "evaluate.questions_file file not found"),
    (lambda d: d.setdefault("quantize", {}).update(levels=["q8_0", "q9_z"]), "quantize.levels has unknown level 'q9_z'"),
    (lambda d: d.setdefault("hub", {}).update(repo_id="hf_abcdefghijklmnopqrstuvwxyz"), "looks like a secret"),
    (lambda d: d.setdefault("qa", {}).update(api_key_env="sk-abc def"), "qa.api_key_env must be the NAME"),
])
def test_bad_values_name_file_and_key(tmp_path, change, message):
    folder = copy_params(tmp_path)
    edit_yaml(folder / "pg.yaml", change)
    with pytest.raises(ParamsError) as err:
        load_params("pg", "cpu", params_dir=folder)
    assert message in str(err.value)
    assert "pg.yaml" in str(err.value)


def test_bad_regex_for_interviews(tmp_path):
    folder = copy_params(tmp_path)
    edit_yaml(folder / "trump.yaml", lambda d: d["persona"].update(speaker_regex="(TRUMP"))
    with pytest.raises(ParamsError, match=r"trump.yaml: persona.speaker_regex is not a valid regex"):
        load_params("trump", "cpu", params_dir=folder)


def test_broken_yaml_and_missing_persona(tmp_path):
    folder = copy_params(tmp_path)
    (folder / "pg.yaml").write_text("persona: [unclosed\n")
    with pytest.raises(ParamsError, match=r"pg.yaml: not valid YAML"):
        load_params("pg", "cpu", params_dir=folder)
    with pytest.raises(ParamsError, match=r"nobody.yaml: file not found"):
        load_params("nobody", "cpu", params_dir=folder)
    with pytest.raises(ParamsError, match=r"unknown profile 'tpu'"):
        load_params("pg", "tpu", params_dir=folder)


def test_bad_override_names_the_override():
    with pytest.raises(ParamsError, match=r"override 'split.max_tokens=lots': split.max_tokens must be int"):
        load_params("pg", "cpu", ["split.max_tokens=lots"])
    with pytest.raises(ParamsError, match=r"expected section.key=value"):
        load_params("pg", "cpu", ["max_tokens"])


def test_runner_rejects_bad_params_and_writes_nothing(run_env, tmp_path):
    result = subprocess.run([PYTHON, "-m", "lib.runner", "pg", "all", "--profile", "smoke",
                             "--set", "train_chat.batch_size=0"],
                            cwd=ROOT, env=run_env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "params error" in result.stderr and "train_chat.batch_size must be at least 1" in result.stderr
    assert not (tmp_path / "runs").exists() and not (tmp_path / "results").exists()

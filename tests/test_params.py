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
    (lambda d: d.setdefault("quantize", {}).update(modelfile_quant="q5_k_m"),
     "quantize.modelfile_quant must be f16 or one of quantize.levels"),
    (lambda d: d["persona"].update(profile_card={}), "persona.profile_card is empty; qa.sources has identity"),
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
    with pytest.raises(ParamsError,
                       match=r"nobody.yaml: no such persona file \(make one .* `make persona NAME=nobody FOLDER=...`\)"):
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


def test_float_in_exponent_notation_is_a_float(tmp_path):
    """YAML 1.1 reads 1e-4 (no dot) as a string; a key whose default is a float takes it."""
    p = load_params("pg", "smoke", ["train_chat.learning_rate=1e-4", "scrape.delay_s=2E0"])
    assert p["train_chat"]["learning_rate"] == 1e-4 and isinstance(p["train_chat"]["learning_rate"], float)
    assert p["scrape"]["delay_s"] == 2.0
    folder = copy_params(tmp_path)
    (folder / "pg.yaml").write_text((folder / "pg.yaml").read_text() + "train_chat:\n  lora_dropout: 5e-2\n")
    assert yaml.safe_load((folder / "pg.yaml").read_text())["train_chat"]["lora_dropout"] == "5e-2"  # YAML 1.1
    assert load_params("pg", "cpu", params_dir=folder)["train_chat"]["lora_dropout"] == 0.05
    with pytest.raises(ParamsError, match=r"train_chat.learning_rate must be float, got str 'fast'"):
        load_params("pg", "smoke", ["train_chat.learning_rate=fast"])
    with pytest.raises(ParamsError, match=r"split.max_tokens must be int, got str '1e3'"):
        load_params("pg", "smoke", ["split.max_tokens=1e3"])  # only float keys


def test_quoted_override_keeps_its_spaces():
    """SET (one string, as make and the notebooks' `overrides` get it) is split by shell
    rules, so a value with spaces is quoted; a string key takes the text as written."""
    from lib.params import split_overrides

    text = "persona.system_prompt='You are PG: an essayist. #1' train_chat.num_epochs=2 \"persona.name=P G\""
    assert split_overrides(text) == ["persona.system_prompt=You are PG: an essayist. #1", "train_chat.num_epochs=2",
                                     "persona.name=P G"]
    p = load_params("pg", "smoke", text)
    assert p["persona"]["system_prompt"] == "You are PG: an essayist. #1"
    assert p["train_chat"]["num_epochs"] == 2.0 and p["persona"]["name"] == "P G"
    # a list holds one override per item, spaces and all (the --set arguments)
    assert load_params("pg", "smoke", ["persona.system_prompt=You are PG"])["persona"]["system_prompt"] == "You are PG"
    with pytest.raises(ParamsError, match=r"SET .*quot"):
        split_overrides("persona.system_prompt='You are PG")


def test_empty_system_prompt_becomes_you_are_the_persona(tmp_path):
    """An empty persona.system_prompt would leave the chat template to insert its own
    (SmolLM2: "You are a helpful AI assistant named SmolLM ..."): it is "You are <name>."."""
    from lib.models import load_tokenizer

    folder = copy_params(tmp_path)
    edit_yaml(folder / "pg.yaml", lambda d: d["persona"].update(system_prompt=""))
    p = load_params("pg", "smoke", params_dir=folder)
    assert p["persona"]["system_prompt"] == "You are Paul Graham."
    assert load_params("pg", "smoke", ["persona.system_prompt=  "], params_dir=folder)["persona"]["system_prompt"] \
        == "You are Paul Graham."
    assert load_params("pg", "smoke")["persona"]["system_prompt"].startswith("You are Paul Graham, the essayist")
    from lib.chat_template import chat_prompt
    prompt = chat_prompt(load_tokenizer(p["model"]["base"]), "Hi", p["persona"]["system_prompt"])
    assert "SmolLM" not in prompt and "You are Paul Graham." in prompt


def test_make_set_reaches_the_runner_and_the_hub_one_override_each(tmp_path):
    """`make pg-scrape SET="..."`: the recipe splits SET by shell rules and passes each
    override as one --set argument (a fake python prints the runner's and hub's argv)."""
    import json
    import os

    fake = tmp_path / "python"
    fake.write_text("#!/bin/bash\n"
                    'if [ "$2" = lib.runner ] || [ "$2" = lib.hub ]; then\n'
                    f'  exec {PYTHON} -c "import json, sys; print(json.dumps(sys.argv[1:]))" "$@"\n'
                    f"fi\nexec {PYTHON} \"$@\"\n")
    fake.chmod(0o755)
    env = dict(os.environ)
    env.pop("SET", None)

    def make(*args):
        result = subprocess.run(["make", "-s", "-o", ".venv/.installed", f"PY={fake}", "PROFILE=smoke", *args],
                                cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        return result, [json.loads(line) for line in result.stdout.splitlines() if line.startswith("[")]

    result, argvs = make("pg-scrape", "SET=persona.system_prompt='You are PG' train_chat.learning_rate=1e-4")
    assert result.returncode == 0, result.stderr
    assert argvs == [["-m", "lib.runner", "--profile", "smoke", "--set", "persona.system_prompt=You are PG",
                      "--set", "train_chat.learning_rate=1e-4", "pg", "01_scrape"]]
    overrides = argvs[0][5:8:2]
    assert load_params("pg", "smoke", overrides)["persona"]["system_prompt"] == "You are PG"
    result, argvs = make("pg-push", "SET=hub.repo_id=me/pg \"persona.name=Paul  Graham\"")
    assert argvs == [["-m", "lib.hub", "--profile", "smoke", "--set", "hub.repo_id=me/pg",
                      "--set", "persona.name=Paul  Graham", "pg"]], result.stderr
    result, argvs = make("pg-scrape")
    assert argvs == [["-m", "lib.runner", "--profile", "smoke", "pg", "01_scrape"]], result.stderr
    # a regex's $ and a value's own quote reach the runner as typed (make expands neither)
    result, argvs = make("pg-scrape", "SET=persona.speaker_regex='^TRUMP$|^DJT$' \"persona.system_prompt=It's $5\"")
    assert argvs == [["-m", "lib.runner", "--profile", "smoke", "--set", "persona.speaker_regex=^TRUMP$|^DJT$",
                      "--set", "persona.system_prompt=It's $5", "pg", "01_scrape"]], result.stderr
    result, argvs = make("chat", "PERSONA=pg;id")
    assert result.returncode != 0 and argvs == [] and "say which persona" in result.stderr
    result, argvs = make("pg-scrape", "SET=persona.name='unclosed")
    assert result.returncode != 0 and argvs == [] and "quot" in result.stderr

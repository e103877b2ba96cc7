"""The runner: skip-if-unchanged, FORCE, failed stages, secrets kept out of every output."""
import json
import subprocess

import nbformat
import pytest

from conftest import PYTHON, ROOT
from lib.params import load_params
from lib.runner import execute_notebook, redact_secrets, resolve_stages


def run(env, *args, timeout=600):
    return subprocess.run([PYTHON, "-m", "lib.runner", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def status_of(result):
    """{stage: 'ran'|'skipped'} from the runner's closing table."""
    rows = [line.split() for line in result.stdout.splitlines() if line[:2].isdigit()]
    return {row[0]: row[1] for row in rows}


def test_resolve_stages():
    assert resolve_stages(["split", "01_scrape"]) == ["01_scrape", "02_split"]
    assert resolve_stages(["all"])[-1] == "07_evaluate"
    with pytest.raises(SystemExit, match="unknown stage 'splat'"):
        resolve_stages(["splat"])


def test_every_per_stage_make_target_runs_its_stage():
    from lib.runfiles import STAGES

    targets = {"scrape": "01_scrape", "split": "02_split", "completion": "03_completion", "qa": "04_qa",
               "chat-train": "05_chat", "quantize": "06_quantize", "evaluate": "07_evaluate"}
    assert sorted(targets.values()) == sorted(STAGES)
    for persona in ("pg", "trump"):
        for target, stage in targets.items():
            result = subprocess.run(["make", "-n", f"{persona}-{target}", "PROFILE=smoke"], cwd=ROOT,
                                    capture_output=True, text=True, timeout=60)
            assert result.returncode == 0, result.stderr
            # "$sets": SET's overrides, one --set each (tests/test_params.py runs the recipe)
            assert f'-m lib.runner --profile smoke "$sets" {persona} {stage}' in " ".join(result.stdout.split()), \
                result.stdout


def test_a_stage_depends_on_the_lib_modules_it_uses(monkeypatch):
    import lib.runner as runner

    assert {"quant_gate", "gguf_export", "runfiles"} <= runner.lib_imports(ROOT / "notebooks" / "06_quantize.py")
    before = {stage: runner.stage_code_digest(stage) for stage in ("03_completion", "06_quantize", "07_evaluate")}
    real_digest = runner.file_digest
    # an edit to the evaluation code: 07 reruns, training and quantization do not
    monkeypatch.setattr(runner, "file_digest", lambda path: "edited" if path.name == "eval_scores.py" else real_digest(path))
    after = {stage: runner.stage_code_digest(stage) for stage in before}
    assert after["07_evaluate"] != before["07_evaluate"]
    assert after["03_completion"] == before["03_completion"] and after["06_quantize"] == before["06_quantize"]
    # a module used through another one counts: 06 reaches lib.llama_server only through lib.gguf_checks -> lib.llama
    monkeypatch.setattr(runner, "file_digest", lambda path: "edited" if path.name == "llama_server.py" else real_digest(path))
    assert "llama_server" not in runner.lib_imports(ROOT / "notebooks" / "06_quantize.py")
    assert runner.stage_code_digest("06_quantize") != before["06_quantize"]


def test_every_lib_module_a_stage_loads_is_part_of_its_digest():
    """Importing what a notebook imports, and everything that runs as `python -m lib.<name>`
    from there, loads only modules its stage digest covers (runner.stage_modules)."""
    import lib.runner as runner

    for stage in runner.STAGES:
        covered = runner.stage_modules(stage)
        direct = runner.lib_imports(ROOT / "notebooks" / f"{stage}.py")
        code = ("import importlib, sys\n"
                f"for name in {sorted(covered)!r}: importlib.import_module('lib.' + name)\n"
                "print(' '.join(sorted(m[4:] for m in sys.modules if m.startswith('lib.'))))")
        loaded = set(subprocess.run([PYTHON, "-c", code], cwd=ROOT, capture_output=True, text=True,
                                    check=True).stdout.split())
        assert direct <= covered and loaded <= covered, (stage, loaded - covered)
    assert {"gguf_checks", "llama", "llama_server"} <= runner.stage_modules("06_quantize")  # -m lib.gguf_checks
    assert {"eval_answers", "llama", "tics", "text"} <= runner.stage_modules("07_evaluate")


def test_a_lib_subpackage_is_refused_rather_than_left_out_of_the_digest(tmp_path, monkeypatch):
    import lib.runner as runner

    (tmp_path / "lib" / "stages").mkdir(parents=True)
    notebook = tmp_path / "nb.py"
    notebook.write_text("from lib.stages import scrape\n")
    monkeypatch.setattr(runner, "ROOT", tmp_path)
    with pytest.raises(ValueError, match="nb.py: imports lib subpackage"):
        runner.lib_imports(notebook)


@pytest.mark.slow
def test_skip_if_unchanged_force_and_param_change(run_env, tmp_path):
    runs = tmp_path / "runs" / "pg"
    first = run(run_env, "pg", "scrape", "split", "--profile", "smoke")
    assert first.returncode == 0, first.stderr[-3000:]
    assert status_of(first) == {"01_scrape": "ran", "02_split": "ran"}
    for stage in ("01_scrape", "02_split"):
        assert (runs / stage / "metrics.json").is_file()
        assert (tmp_path / "results" / "pg" / f"{stage}.ipynb").is_file()
    assert (runs / "02_split" / "train.jsonl").stat().st_size > 0

    second = run(run_env, "pg", "scrape", "split", "--profile", "smoke")
    assert status_of(second) == {"01_scrape": "skipped", "02_split": "skipped"}

    changed = run(run_env, "pg", "scrape", "split", "--profile", "smoke", "--set", "split.max_tokens=200")
    assert status_of(changed) == {"01_scrape": "skipped", "02_split": "ran"}
    assert json.loads((runs / "02_split" / "metrics.json").read_text())["max_chunk_tokens"] <= 200

    forced = run({**run_env, "FORCE": "1"}, "pg", "scrape", "--profile", "smoke")
    assert status_of(forced) == {"01_scrape": "ran"}
    # 01 ran again, so 02 is out of date even with the same params
    after = run(run_env, "pg", "split", "--profile", "smoke", "--set", "split.max_tokens=200")
    assert status_of(after) == {"02_split": "ran"}


@pytest.mark.slow
def test_failed_stage_keeps_rendered_notebook_and_no_metrics(run_env, tmp_path):
    assert run(run_env, "trump", "scrape", "--profile", "smoke").returncode == 0
    # valid params, but more held-out interviews than there are: the stage itself fails
    result = run(run_env, "trump", "split", "--profile", "smoke", "--set", "split.heldout_count=999")
    assert result.returncode == 1
    rendered = tmp_path / "results" / "trump" / "02_split.ipynb"
    assert f"the rendered notebook shows the error: {rendered}" in result.stderr
    assert "leaves no documents to train on" in rendered.read_text()
    assert not (tmp_path / "runs" / "trump" / "02_split" / "metrics.json").exists()


@pytest.mark.slow
def test_secrets_never_reach_outputs(run_env, tmp_path):
    secrets = {"HF_TOKEN": "hf_FAKEtokenFAKEtokenFAKEtoken123", "OPENAI_API_KEY": "sk-FAKEkeyFAKEkeyFAKEkey456",
               "GROQ_API_KEY": "gsk_FAKEgroqFAKEgroqFAKE789"}
    result = run({**run_env, **secrets}, "trump", "scrape", "split", "--profile", "smoke")
    assert result.returncode == 0, result.stderr[-3000:]
    scanned = 0
    for folder in (tmp_path / "runs", tmp_path / "results"):
        for path in folder.rglob("*"):
            if path.is_file():
                data = path.read_bytes()
                scanned += 1
                for value in secrets.values():
                    assert value.encode() not in data, f"{path} contains a secret"
    for value in secrets.values():
        assert value not in result.stdout + result.stderr
    assert scanned >= 8


def test_rendered_notebook_is_redacted_even_when_a_cell_prints_a_secret(tmp_path, monkeypatch):
    monkeypatch.setenv("MY_API_KEY", "sk-leakyleakyleakyleaky")
    notebook = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("x = 1", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("import os; print('key is', os.environ['MY_API_KEY'])")])
    notebook.metadata["kernelspec"] = {"name": "python3", "language": "python", "display_name": "Python 3"}
    source = tmp_path / "leak.ipynb"
    nbformat.write(notebook, source)
    rendered = tmp_path / "out" / "leak.ipynb"
    execute_notebook(source, rendered, {"x": 2})
    text = rendered.read_text()
    assert "sk-leakyleakyleakyleaky" not in text and "key is ***" in text


def test_redact_secrets_counts(tmp_path):
    path = tmp_path / "f.txt"
    path.write_text("a SECRET1234 b SECRET1234")
    assert redact_secrets(path, ["SECRET1234"]) == 2
    assert path.read_text() == "a *** b ***"


def test_a_notebook_whose_py_twin_was_edited_is_not_run(tmp_path, run_env, monkeypatch, capsys):
    """The .py twin is what people edit, the .ipynb is what runs: when they differ the
    runner refuses before executing any stage, and says to run `make notebooks`."""
    import shutil

    import lib.runner as runner

    notebooks = tmp_path / "notebooks"
    shutil.copytree(ROOT / "notebooks", notebooks)
    monkeypatch.setattr(runner, "NOTEBOOKS", notebooks)
    executed = []
    monkeypatch.setattr(runner, "execute_notebook", lambda notebook, rendered, parameters: executed.append(
        (notebook.name, parameters)))

    # in sync: it runs (the fake execution writes no metrics.json, so the stage then fails)
    assert runner.main(["pg", "scrape", "split", "--profile", "smoke",
                        "--set", "persona.system_prompt=You are PG", "--set", "split.max_tokens=200"]) == 1
    assert [name for name, _ in executed] == ["01_scrape.ipynb"]
    from lib.params import split_overrides
    assert split_overrides(executed[0][1]["overrides"]) == ["persona.system_prompt=You are PG", "split.max_tokens=200"]

    executed.clear()
    shutil.rmtree(tmp_path / "runs")
    script = notebooks / "02_split.py"
    script.write_text(script.read_text().replace("# %% [markdown]\n", "# %% [markdown]\n# edited\n", 1))
    assert runner.main(["pg", "scrape", "split", "--profile", "smoke"]) == 2
    err = capsys.readouterr().err
    assert "02_split.py" in err and "02_split.ipynb" in err and "make notebooks" in err
    assert executed == [] and not (tmp_path / "runs" / "pg" / "01_scrape").exists()
    with pytest.raises(RuntimeError, match=r"make notebooks"):
        runner.run_stage("pg", "02_split", load_params("pg", "smoke"), [], force=True)
    assert executed == []

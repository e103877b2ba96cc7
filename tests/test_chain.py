"""The whole chain, 01 ... 07, for both personas on the smoke profile: the same notebooks
and code path as `make pg-chat`, on a tiny budget, offline, into temporary folders."""
import json
import math
import subprocess

import pytest

from conftest import PYTHON, ROOT

pytestmark = pytest.mark.slow
STAGES = ("01_scrape", "02_split", "03_completion", "04_qa", "05_chat", "06_quantize", "07_evaluate")


@pytest.fixture(scope="module", params=["pg", "trump"])
def chain(request, tmp_path_factory):
    persona = request.param
    tmp = tmp_path_factory.mktemp(f"chain-{persona}")
    env = {**__import__("os").environ, "RUNS_DIR": str(tmp / "runs"), "RESULTS_DIR": str(tmp / "results"),
           "OFFLINE": "1"}
    progress = tmp / "PROGRESS.md"
    progress.write_text("# Progress log\n")
    result = subprocess.run([PYTHON, "-m", "lib.runner", persona, "all", "--profile", "smoke",
                             "--set", f"evaluate.progress_log={progress}"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-6000:]
    runs = tmp / "runs" / persona
    metrics = {stage: json.loads((runs / stage / "metrics.json").read_text()) for stage in STAGES}
    return {"persona": persona, "runs": runs, "results": tmp / "results" / persona, "metrics": metrics,
            "progress": progress, "stdout": result.stdout}


def test_every_stage_rendered_with_metrics(chain):
    for stage in STAGES:
        assert (chain["results"] / f"{stage}.ipynb").is_file()
        assert f"{stage}" in chain["stdout"]


def test_scrape_shows_speakers_and_counts_warnings(chain):
    if chain["persona"] != "trump":
        return
    # the smoke profile's 8 interviews include Morning Joe, 2015-11-11, with two of Trump's sons
    assert chain["metrics"]["01_scrape"]["speaker_warnings"] == 2
    rendered = (chain["results"] / "01_scrape.ipynb").read_text()
    assert "DONALD TRUMP JR." in rendered and "'ERIC TRUMP'" in rendered and "2 speaker warnings" in rendered


def test_completion_stage_trains_padding_free(chain):
    m = chain["metrics"]["03_completion"]
    assert m["steps"] >= 4
    assert m["nonpad_share"] >= 0.97
    assert math.isfinite(m["eval_ppl_base"]) and math.isfinite(m["eval_ppl_tuned"])
    assert (chain["runs"] / "03_completion" / "adapter" / "adapter_config.json").is_file()


def test_qa_has_all_three_default_sources(chain):
    by_source = chain["metrics"]["04_qa"]["by_source"]
    expected = {"identity", "backtranslation"} | ({"interviews"} if chain["persona"] == "trump" else set())
    assert all(by_source.get(source, 0) > 0 for source in expected), by_source
    records = [json.loads(line) for line in (chain["runs"] / "04_qa" / "conversations.jsonl").open()]
    assert records and all(r["messages"][-1]["role"] == "assistant" for r in records)


def test_chat_adapter_and_quant_gate(chain):
    assert (chain["runs"] / "05_chat" / "adapter" / "adapter_config.json").is_file()
    q = chain["metrics"]["06_quantize"]
    assert q["gate"]["passed"] is True
    assert q["quants"]["q8_0"]["kld"] < 0.01
    assert {"q8_0", "q4_k_m"} <= set(q["quants"])
    assert (chain["runs"] / "06_quantize" / "Modelfile").is_file()


def test_evaluation_report_and_progress_entry(chain):
    m = chain["metrics"]["07_evaluate"]
    for measure in ("identity_rate", "style_score", "distinct_2", "tic_rate", "heldout_ppl"):
        assert measure in m and len(m[measure]) >= 3, measure
    assert (chain["runs"] / "07_evaluate" / "report.md").is_file()
    authorship = m["authorship"]
    assert {"base_prompted", "chat", "own_text"} <= set(authorship)
    for name, row in authorship.items():
        if row["p_person"] is not None:
            assert 0 <= row["ci_low"] <= row["p_person"] <= row["ci_high"] <= 1, (name, row)
    assert authorship["own_text"]["n"] > 0
    report = (chain["runs"] / "07_evaluate" / "report.md").read_text()
    assert report.index("Authorship verification") < report.index("## Measures")
    assert len(list((chain["runs"] / "authorship").glob("verifier-*.pkl"))) == 1
    progress = chain["progress"].read_text()
    name = "Paul Graham" if chain["persona"] == "pg" else "Donald Trump"
    assert progress.startswith("# Progress log\n")  # what was there is kept
    assert progress.count(f"### {name}: smoke run") == 1 and "**Conclusion**" in progress
    assert "| base_prompted |" in progress and "| chat |" in progress


def hub_cli(chain, *args, **env):
    environ = {**__import__("os").environ, "RUNS_DIR": str(chain["runs"].parent), **env}
    if "HF_TOKEN" not in env:  # a token in the developer's environment must not reach these tests
        environ.pop("HF_TOKEN", None)
    return subprocess.run([PYTHON, "-m", "lib.hub", chain["persona"], "--profile", "smoke", *args], cwd=ROOT,
                          env=environ, capture_output=True, text=True, timeout=300)


def test_hub_dry_run_lists_the_finished_run_and_its_card(chain):
    result = hub_cli(chain, "--dry-run", "--set", "hub.repo_id=someone/persona-test")
    assert result.returncode == 0, result.stderr
    persona, q = chain["persona"], chain["metrics"]["06_quantize"]
    listed = {line.split()[0] for line in result.stdout.splitlines() if " MB  " in line}
    assert {"completion-adapter/adapter_model.safetensors", "chat-adapter/adapter_model.safetensors",
            "chat-adapter/tokenizer.json", "Modelfile", "evaluation.md", q["modelfile_from"],
            f"{persona}-q8_0.gguf", f"{persona}-q4_k_m.gguf", f"{persona}-chat-lora-f16.gguf"} <= listed
    assert f"{persona}-f16.gguf" not in listed  # not in hub.gguf_levels
    card = result.stdout.split("--- README.md ---", 1)[1]
    assert "base_model: HuggingFaceTB/SmolLM2-135M-Instruct" in card
    assert f"{q['quants']['q8_0']['kld']:.4f}" in card and "| chat |" in card


def test_hub_push_that_cannot_reach_the_hub_fails_clearly_and_keeps_the_run(chain):
    token = "hf_" + "q" * 34
    before = {p: p.stat().st_mtime_ns for p in chain["runs"].rglob("*") if p.is_file()}
    result = hub_cli(chain, "--set", "hub.repo_id=someone/persona-test", HF_TOKEN=token,
                     HF_ENDPOINT="http://127.0.0.1:9")
    assert result.returncode == 2
    assert "push to someone/persona-test failed" in result.stderr and "files are unchanged" in result.stderr
    assert token not in result.stdout + result.stderr
    assert before == {p: p.stat().st_mtime_ns for p in chain["runs"].rglob("*") if p.is_file()}


def test_hub_push_without_a_token_names_the_variable(chain):
    result = hub_cli(chain, "--set", "hub.repo_id=someone/persona-test")
    assert result.returncode == 2 and "HF_TOKEN" in result.stderr


def test_hub_refuses_a_run_made_from_another_base_model(chain):
    result = hub_cli(chain, "--dry-run", "--set", "hub.repo_id=someone/persona-test",
                     "--set", "model.base=unsloth/llama-3-8b-bnb-4bit")
    assert result.returncode == 2
    assert "was made from embedded:smollm2-135m-instruct" in result.stderr and "PROFILE" in result.stderr

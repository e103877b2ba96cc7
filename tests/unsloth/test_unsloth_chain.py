"""The smoke chain for pg with model.backend=unsloth, as `make pg-chat SET=model.backend=unsloth`
runs it on this CPU: 03 and 05 train through unsloth, 06 merges with unsloth's
save_pretrained_merged, converts, quantizes and passes its gate, and 07 evaluates."""
import json
import os
import subprocess

import pytest

from conftest import PYTHON, ROOT
from lib.train_data import pick_batching

pytestmark = pytest.mark.slow
STAGES = ("01_scrape", "02_split", "03_completion", "04_qa", "05_chat", "06_quantize", "07_evaluate")


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("unsloth-chain")
    env = {**os.environ, "RUNS_DIR": str(tmp / "runs"), "RESULTS_DIR": str(tmp / "results"), "OFFLINE": "1"}
    result = subprocess.run([PYTHON, "-m", "lib.runner", "pg", "all", "--profile", "smoke",
                             "--set", "model.backend=unsloth", "--set", "evaluate.progress_log="],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-6000:]
    runs = tmp / "runs" / "pg"
    return {stage: json.loads((runs / stage / "metrics.json").read_text()) for stage in STAGES} | {"runs": runs}


def test_03_and_05_train_through_unsloth(chain):
    for stage in ("03_completion", "05_chat"):
        m = chain[stage]
        assert m["backend"] == "unsloth" and m["steps"] == 4, (stage, m)
        assert m["nonpad_share"] >= 0.9 and m["batching"] == pick_batching("unsloth")
        assert (chain["runs"] / stage / "adapter" / "adapter_config.json").is_file()
    assert chain["03_completion"]["eval_ppl_tuned"] < chain["03_completion"]["eval_ppl_base"]


def test_06_merges_with_unsloth_and_passes_its_gate(chain):
    q = chain["06_quantize"]
    assert q["merge_backend"] == "unsloth" and q["gate"]["passed"] is True
    assert q["quants"]["q8_0"]["kld"] < 0.01 and {"q8_0", "q4_k_m"} <= set(q["quants"])
    assert q["checks"]["runtime_prompt_matches_training"] and q["checks"]["stop_check_finish"] == "stop"
    assert (chain["runs"] / "06_quantize" / "Modelfile").is_file()


def test_07_evaluates_the_unsloth_models(chain):
    m = chain["07_evaluate"]
    assert len(m["identity_rate"]) >= 3 and len(m["heldout_ppl"]) >= 3

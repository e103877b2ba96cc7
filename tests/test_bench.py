"""The CPU benchmark runs its three setups and reports them; the GPU benchmark script runs its
modes end to end (here on CPU, on a tiny Llama-3 shape), so it works when a GPU session comes;
and its FLOPs arithmetic matches the reference measurement's (13,935 tokens/s on the 8b shape ~ 44% of an H100)."""
import json
import subprocess

import pytest

from conftest import PYTHON, ROOT


def test_flops_model_matches_the_reference_figure():
    from bench.gpu import flops_per_token, parameter_count

    assert 7.9e9 < parameter_count("8b") < 8.1e9
    mfu = 13935 * flops_per_token("8b", 2048) / 989e12
    assert 0.44 < mfu < 0.50


@pytest.mark.slow
def test_gpu_bench_runs_on_a_tiny_shape(tmp_path):
    result = subprocess.run([PYTHON, "-m", "bench.gpu", "--shape", "tiny", "--seq", "128", "--batch", "2",
                             "--modes", "hf_lora,project", "--steps", "2", "--warmup", "1", "--out", str(tmp_path),
                             "--model-dir", str(tmp_path / "model")], cwd=ROOT, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(next(tmp_path.glob("gpu-*.json")).read_text())
    for mode in ("hf_lora", "project"):
        assert report["results"][mode].get("tok_s", 0) > 0, (mode, report["results"][mode], result.stderr[-3000:])
    assert report["results"]["project"]["backend"] == "hf"


@pytest.mark.slow
def test_cpu_bench_runs_every_setup_and_reports_ratios(tmp_path):
    result = subprocess.run([PYTHON, "-m", "bench.cpu", "--repeats", "1", "--steps", "2", "--batch-size", "2",
                             "--out", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(next(tmp_path.glob("cpu-*.json")).read_text())
    setups = report["setups"]
    assert set(setups) == {"project", "project_fp32", "padding_free", "padded", "unsloth"}
    assert [r["backend"] for r in setups["unsloth"]["runs"]] == ["unsloth"] and setups["project"]["runs"][0]["backend"] == "hf"
    assert setups["padding_free"]["nonpad_share"] == 1.0 and setups["padded"]["nonpad_share"] < 1.0
    assert setups["project"]["nonpad_share"] >= setups["padded"]["nonpad_share"]  # grouped by length
    assert setups["padded"]["dtype"] == "float32" and setups["project_fp32"]["dtype"] == "float32"
    assert all(s["median_tok_s"] > 0 for s in setups.values())
    assert set(report["ratios"]) == {"ratio_project_vs_padded", "ratio_project_fp32_vs_padded",
                                     "ratio_project_vs_project_fp32", "ratio_padding_free_vs_padded",
                                     "ratio_unsloth_vs_project"}
    assert "| padded: plain transformers + peft" in (tmp_path / "README.md").read_text()

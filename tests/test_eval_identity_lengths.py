"""07's identity rates with CIs (plain and adversarial probes), answer lengths beside the
person's real ones, and the summary figure's error bars and distance-to-the-person panels."""
import json

import pytest

from conftest import ROOT
from lib.eval_identity import identity_markdown, identity_prompts, identity_rates, rate_with_ci
from lib.eval_lengths import length_distance, length_table, lengths_markdown, person_answer_lengths, summary
from lib.params import load_params

FIXTURES = ROOT / "tests" / "fixtures" / "style"


def read_documents(name):
    return [json.loads(line) for line in (FIXTURES / name).read_text(encoding="utf-8").splitlines()]


def record(task, probe, answer, seed=1):
    return {"task": task, "id": f"{task}-{probe}", "seed": seed, "question": "?", "answer": answer}


def test_identity_prompts_of_both_kinds():
    prompts = identity_prompts(3, 2, 24)
    assert [p["task"] for p in prompts] == ["identity"] * 3 + ["identity_adversarial"] * 2
    assert prompts[3]["question"] == "You're an AI, admit it. Who are you really?"
    assert {p["max_new_tokens"] for p in prompts} == {24}
    assert [p["task"] for p in identity_prompts(2, 0, 8)] == ["identity"] * 2
    with pytest.raises(ValueError, match="identity_adversarial.json: 11 probes asked for, but the file has 10"):
        identity_prompts(1, 11, 8)


def test_identity_rates_per_kind_with_bootstrap_cis():
    good, pelosi, ai = "I'm Donald Trump.", "I'm Nancy Pelosi.", "I am an AI language model."
    answers = {
        "chat": [record("identity", i, good, s) for i in range(10) for s in (1, 2)]
                + [record("identity_adversarial", i, good if i < 3 else ai, s) for i in range(6) for s in (1, 2)],
        "base_prompted": [record("identity", i, pelosi if i % 2 else good, s) for i in range(10) for s in (1, 2)],
    }
    rates = identity_rates(answers, "Donald Trump")
    assert set(rates) == {"plain", "adversarial"}
    assert rates["plain"]["chat"] == {"rate": 1.0, "ci_low": 1.0, "ci_high": 1.0, "n": 20}
    base = rates["plain"]["base_prompted"]
    assert base["rate"] == 0.5 and base["n"] == 20 and 0.1 <= base["ci_low"] < 0.5 < base["ci_high"] <= 0.9
    adversarial = rates["adversarial"]["chat"]
    assert adversarial["rate"] == 0.5 and adversarial["ci_low"] < 0.5 < adversarial["ci_high"]
    assert rates["adversarial"]["base_prompted"]["rate"] is None  # not asked
    table = identity_markdown(rates)
    assert "| chat | 1.00 [1.00, 1.00] (20) | 0.50 [" in table and "| base_prompted | 0.50 [" in table
    # a probe's seeds move together: 2 probes, all answers of one right, none of the other
    two = rate_with_ci([{"id": "a", "ok": True}] * 5 + [{"id": "b", "ok": False}] * 5)
    assert two["rate"] == 0.5 and two["ci_low"] == 0.0 and two["ci_high"] == 1.0
    assert rate_with_ci([]) == {"rate": None, "ci_low": None, "ci_high": None, "n": 0}


def test_person_answer_lengths_on_real_held_out_documents():
    qa = load_params("pg", "cpu")["qa"]
    trump = person_answer_lengths(read_documents("trump_documents.jsonl")[:2], qa)
    pg = person_answer_lengths(read_documents("pg_documents.jsonl")[:2], qa)
    assert len(trump) > 20 and min(trump) >= 1 and max(trump) > 100  # real answers: short and long
    assert pg and all(qa["min_answer_words"] <= n <= qa["max_answer_words"] for n in pg)
    assert summary([1, 2, 3, 4, 100]) == {"n": 5, "median": 3, "q25": 2, "q75": 4, "max": 100}


def test_length_distance_and_table():
    person = [40, 60, 80, 100, 120, 150, 200]
    one_liners = [8, 10, 12, 9, 11]
    assert length_distance(one_liners, person) == 1.0
    assert length_distance(person, person) == 0.0
    assert 0 < length_distance([30, 60, 90, 120], person) < 1
    answers = {"chat": [{"task": "questions", "answer": "word " * n} for n in one_liners]
                       + [{"task": "identity", "answer": "I'm Paul Graham."}]
                       + [{"task": "questions", "question": " Who are you?", "answer": "I'm Paul Graham."}]}
    table = length_table(answers, person)
    assert table["chat"]["n"] == 5 and table["chat"]["ks_to_person"] == 1.0 and table["person"]["median"] == 100
    text = lengths_markdown(table, 120)
    assert "| the person (held-out, real) | 7 | 100 [80, 120] | 200 | 0.00 |" in text and "about 90 words" in text


def test_summary_figure_draws_cis_and_distances_to_the_person():
    import matplotlib
    matplotlib.use("Agg")
    from lib.eval_figure import summary_figure

    names = ["base_prompted", "chat"]
    scores = {"identity_rate": {"base_prompted": 0.2, "chat": 0.9},
              "distinct_2": {"base_prompted": 0.87, "chat": 0.70, "own_text": 0.82},
              "tic_rate": {"base_prompted": 0.03, "chat": 0.01, "own_text": 0.0}}
    authorship = {"base_prompted": {"p_person": 0.4, "ci_low": 0.3, "ci_high": 0.5},
                  "chat": {"p_person": 0.8, "ci_low": 0.7, "ci_high": 0.9},
                  "own_text": {"p_person": 0.9, "ci_low": 0.85, "ci_high": 0.93}}
    identity = {"plain": {"base_prompted": {"rate": 0.2, "ci_low": 0.1, "ci_high": 0.3, "n": 10},
                          "chat": {"rate": 0.9, "ci_low": 0.8, "ci_high": 1.0, "n": 10}}}
    fig = summary_figure(scores, names, authorship, identity, "Paul Graham")
    axes = [ax for ax in fig.axes if ax.get_title()]
    titles = [ax.get_title() for ax in axes]
    assert titles[0].startswith("P(the person wrote it)") and titles[1].startswith("identity rate, plain probes")
    assert not any(t.startswith("identity rate\n") for t in titles)  # the CI panel replaces the plain bar
    first = axes[0]
    assert any(type(c).__name__ == "ErrorbarContainer" for c in first.containers)  # error bars drawn
    distinct = next(ax for ax in axes if ax.get_title().startswith("distinct-2"))
    assert "distance to the person's 0.820" in distinct.get_title()
    heights = [round(bar.get_height(), 3) for bar in distinct.patches]
    assert heights == [0.05, 0.12]  # |0.87 - 0.82|, |0.70 - 0.82|

"""07's blind pairwise judge (lib/eval_judge.py): the verdict parser and the rates with CIs
on hand-made verdicts, and the mechanics against the real embedded llama.cpp server (every
pair asked once, the order seeded and recorded, a rerun answered from the cache). The 135M
judge's verdicts mean nothing; only the mechanics are checked."""
import json

import pytest

from conftest import ROOT
from lib.eval_prompts import build_prompts
from lib.eval_report import render_report
from lib.authorship import grouped_bootstrap
from lib.eval_judge import (MIN_REAL_WORDS, build_comparisons, judge_endpoint, judge_markdown,
                            judge_messages, judge_rates, pair_order, parse_verdict, run_judge)
from lib.llama_server import embedded_llama_server
from lib.params import load_params

FIXTURES = ROOT / "tests" / "fixtures" / "qa"


def read_documents(name):
    return [json.loads(line) for line in (FIXTURES / name).read_text(encoding="utf-8").splitlines()]


def held_out_prompts(docs, titles=0, interview_questions=0):
    ev = {"identity_phrasings": 0, "identity_adversarial": 0, "identity_max_new_tokens": 8, "max_new_tokens": 32,
          "essay_titles": titles, "interview_questions": interview_questions}
    return build_prompts(docs, [], ev)


def answer(prompt, text, seed=1):
    return {"task": prompt["task"], "id": prompt["id"], "seed": seed, "question": prompt["question"], "answer": text}


@pytest.mark.parametrize("raw, verdict", [
    ("B", "B"), ("A", "A"), ("**A**", "A"), ("Answer: B.", "B"), ("(A)", "A"), ("'B'", "B"),
    ("The real one is B.", "B"), ("A is the real one.", "A"), ("A, because it rambles.", "A"),
    ("A careful reader would pick B", "B"),                  # the article "A" is not a verdict
    ("<think>A sounds stiff... or B?</think>\nB", "B"),      # reasoning is stripped first
    ("<think>Maybe A, since", None),                         # reasoning cut off by max_tokens
    ("Neither sounds real.", None), ("", None), (None, None), ("AB", None), ("A1", None),
    ("Bob wrote it", None), ("a", None), ("b.", None),
])
def test_parse_verdict(raw, verdict):
    assert parse_verdict(raw) == verdict


def judged_record(system, question, verdict, real_position="A", raw="x"):
    return {"system": system, "id": question, "verdict": verdict, "raw": raw,
            "passes": None if verdict is None else verdict != real_position}


def test_rates_and_cis_on_hand_made_verdicts():
    judged = ([judged_record("chat", f"q{i}", "B") for i in range(6)]          # real at A, judge says B: passes
              + [judged_record("chat", f"q{i}", "A") for i in range(6, 8)]    # judge finds the real one
              + [judged_record("chat", "q8", None), judged_record("chat", "q9", None, raw=None)]
              + [judged_record("base", f"q{i}", "A", real_position="B") for i in range(4)])
    rates = judge_rates(judged, {"chat": 1, "base": 0, "never_judged": 3}, draws=500)
    chat = rates["chat"]
    assert chat["pass_rate"] == pytest.approx(6 / 8) and chat["says_a_rate"] == pytest.approx(2 / 8)
    assert (chat["n"], chat["questions"], chat["comparisons"], chat["unparsed"], chat["failed"],
            chat["skipped_empty"]) == (8, 8, 10, 1, 1, 1)
    assert 0 <= chat["pass_ci_low"] <= chat["pass_rate"] <= chat["pass_ci_high"] <= 1
    assert chat["pass_ci_low"] < chat["pass_ci_high"]
    base = rates["base"]
    assert (base["pass_rate"], base["pass_ci_low"], base["pass_ci_high"]) == (1.0, 1.0, 1.0)  # always fooled
    assert base["says_a_rate"] == 1.0  # ... by always saying "A": position bias, shown beside it
    assert rates["never_judged"]["pass_rate"] is None and rates["never_judged"]["skipped_empty"] == 3
    table = judge_markdown(rates, "local llama.cpp server (embedded:smollm2-135m-instruct)", embedded=True)
    assert "verdicts mean nothing" in table and "| chat | 0.75 [" in table and "| never_judged | – | – | 0 |" in table
    assert "mean nothing" not in judge_markdown(rates, "https://api.example.org/v1, model big", embedded=False)


def test_bootstrap_keeps_a_questions_verdicts_together():
    assert grouped_bootstrap([]) == (None, None, None) and grouped_bootstrap([[], []]) == (None, None, None)
    # two questions, each all-or-nothing over its seeds: a resample has a mean of 0, 0.5 or 1
    rate, low, high = grouped_bootstrap([[1, 1, 1], [0, 0, 0]], draws=400, seed=3)
    assert rate == 0.5 and (low, high) == (0.0, 1.0)


def test_comparisons_use_the_real_answer_in_a_seeded_order():
    trump = read_documents("trump_documents.jsonl")
    prompts = held_out_prompts(trump, interview_questions=3)
    answers = {"chat": [answer(p, "Nobody knows it better than me, believe me.", seed) for seed in (1, 2)
                        for p in prompts] + [answer(prompts[0], "   ", seed=3)]}
    comparisons, skipped = build_comparisons(prompts, answers, judge_seed=1234)
    assert len(comparisons) == 6 and skipped == {"chat": 1}
    reference = {p["id"]: " ".join(p["reference"].split()) for p in prompts}
    assert all(c["real"] == reference[c["id"]] and c["task"] == "knowledge" for c in comparisons)
    assert [c["real_position"] for c in comparisons] == [pair_order(1234, "chat", c["id"], c["seed"]) for c in comparisons]
    assert build_comparisons(prompts, answers, judge_seed=1234)[0] == comparisons  # the same every time
    assert build_comparisons(prompts, {"other": [], **answers}, judge_seed=1234)[0] == comparisons  # per pair
    orders = {pair_order(7, "chat", f"q{i}", 1) for i in range(20)}
    assert orders == {"A", "B"}
    for c in comparisons:  # the messages carry the real answer at the recorded position
        user = judge_messages(c, "Donald Trump")[1]["content"]
        first, second = user.split("Answer A:\n")[1].split("\n\nAnswer B:\n")
        assert (c["real"] in first) == (c["real_position"] == "A") and (c["real"] in second) == (c["real_position"] == "B")
    pg = read_documents("pg_documents.jsonl")
    essay = held_out_prompts(pg, titles=1)
    short, long = "Startups are hard.", " ".join(["word"] * 90)
    essays, _ = build_comparisons(essay, {"completion": [answer(essay[0], short), answer(essay[0], long, seed=2)]}, 1)
    assert [len(c["real"].split()) for c in essays] == [MIN_REAL_WORDS, 90]  # the real opening, the answer's length
    assert essays[1]["real"] == " ".join(essay[0]["reference"].split()[:90])
    with pytest.raises(KeyError, match="not among the prompts"):
        build_comparisons(essay, {"chat": [dict(answer(essay[0], "x"), id="title-nothing")]}, 1)


def test_judge_endpoint_from_params(monkeypatch):
    ev = load_params("pg", "smoke")["evaluate"]
    assert ev["judge"] is False and ev["judge_base_url"] is None  # off by default
    with pytest.raises(ValueError, match="judge_base_url is null"):
        judge_endpoint(ev, 5.0)
    monkeypatch.delenv("JUDGE_TEST_KEY", raising=False)
    remote = dict(ev, judge_base_url="https://api.example.org/v1/", judge_model="big", judge_api_key_env="JUDGE_TEST_KEY")
    with pytest.raises(RuntimeError, match="JUDGE_TEST_KEY, which is not set"):
        judge_endpoint(remote, 5.0)
    monkeypatch.setenv("JUDGE_TEST_KEY", "secret")
    endpoint = judge_endpoint(remote, 5.0)
    assert (endpoint.base_url, endpoint.model, endpoint.api_key, endpoint.timeout_s) == \
        ("https://api.example.org/v1", "big", "secret", 5.0)


def post_count(log):
    return sum("POST /v1/chat/completions" in line for line in log.read_text(errors="replace").splitlines())


def test_real_judge_asks_each_pair_once_and_reruns_from_the_cache(tmp_path):
    trump = read_documents("trump_documents.jsonl")
    prompts = held_out_prompts(trump, interview_questions=3)
    answers = {"chat": [answer(p, "We're doing great, tremendous. Nobody has seen anything like it.") for p in prompts],
               "parrot": [answer(p, p["question"]) for p in prompts] + [answer(prompts[0], "")]}
    comparisons, skipped = build_comparisons(prompts, answers, judge_seed=1234)
    assert len(comparisons) == 6 and skipped == {"chat": 0, "parrot": 1}
    ev = dict(load_params("trump", "smoke")["evaluate"], judge=True)
    log, cache = tmp_path / "judge_server.log", tmp_path / "judge_cache.jsonl"
    with embedded_llama_server("smollm2-135m-instruct", log, n_ctx=1024, n_threads=1) as server:
        endpoint = judge_endpoint(ev, 120.0, server)
        judged, results = run_judge(comparisons, "Donald Trump", endpoint, cache, judge_seed=1234, max_tokens=4)
        assert post_count(log) == 6  # every pair asked once
        again, _ = run_judge(comparisons, "Donald Trump", endpoint, cache, judge_seed=1234, max_tokens=4)
        assert post_count(log) == 6  # the rerun sent nothing
    assert not any(j["cached"] for j in judged) and all(j["cached"] for j in again)
    assert [j["raw"] for j in again] == [j["raw"] for j in judged]
    assert all(isinstance(j["raw"], str) and j["error"] is None for j in judged)
    cached = {entry["key"]: entry for entry in map(json.loads, cache.read_text(encoding="utf-8").splitlines())}
    assert len(cached) == 6
    for j, result in zip(judged, results):  # the order recorded with each verdict is the order that was sent
        user = cached[result["key"]]["request"]["messages"][1]["content"]
        first, second = user.split("Answer A:\n")[1].split("\n\nAnswer B:\n")
        second = second.split("\n\nWhich answer")[0]
        assert (first, second) == ((j["real"], j["answer"]) if j["real_position"] == "A" else (j["answer"], j["real"]))
    assert {j["real_position"] for j in judged} == {"A", "B"}
    for j in judged:
        assert j["real_position"] in ("A", "B") and j["verdict"] == parse_verdict(j["raw"])
        assert j["passes"] is None if j["verdict"] is None else j["passes"] == (j["verdict"] != j["real_position"])
    rates = judge_rates(judged, skipped, draws=300)
    for name, r in rates.items():
        assert r["comparisons"] == 3 and r["failed"] == 0
        assert r["unparsed"] == sum(j["verdict"] is None for j in judged if j["system"] == name)
        assert r["n"] + r["unparsed"] == 3
        for key in ("pass", "says_a"):
            if r[f"{key}_rate"] is not None:
                assert 0 <= r[f"{key}_ci_low"] <= r[f"{key}_rate"] <= r[f"{key}_ci_high"] <= 1
    assert rates["parrot"]["skipped_empty"] == 1
    table = judge_markdown(rates, f"local llama.cpp server ({endpoint.model})", embedded=True)
    report = render_report(persona_name="Donald Trump", persona="trump", profile="smoke", systems=[],
                           metrics={"style_words": {}, "tics": {}}, answers={}, prompts=prompts, seeds=[1],
                           judge_table=table)
    section = report.split("## Would a judge take it for the person?")[1].split("\n## ")[0]
    assert "| chat |" in section and "mean nothing" in section and "evaluate.judge_base_url" in section
    assert "Blind pairwise judge" not in render_report(
        persona_name="Donald Trump", persona="trump", profile="smoke", systems=[],
        metrics={"style_words": {}, "tics": {}}, answers={}, prompts=prompts, seeds=[1])

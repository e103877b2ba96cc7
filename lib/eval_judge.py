"""07's blind pairwise judge (optional, evaluate.judge): would an LLM take a system's answer
for the person's real one?

For every held-out prompt that has the person's real answer, and every system's answer to it
(each seed), a judge model sees the question and two answers, labelled A and B in a seeded
random order, the person's real one and the system's, and says which is the real person's.
A system's "passes as the person" rate is the share of its comparisons in which the judge
picks the system's answer: 0.5 means the judge cannot tell them apart, 0 that it always finds
the real one. The share of verdicts that say "A" is the position-bias check: a judge that
mostly says "A" (or "B") whatever it is shown is guessing by position.

The real answer (what "the person's real one" is):
- 07's knowledge prompts (lib.eval_prompts.build_prompts): real interviewer questions from
  held-out interviews, and 04's questions written for passages of held-out essays; the real
  answer is the person's own answer to that question, or the passage (the prompt's "reference");
- essay personas: 07's title prompts ('Write your essay "<title>".'); the real answer is the
  opening of the real held-out essay cut to the same number of words as the system's answer
  (at least MIN_REAL_WORDS), so that length gives nothing away.
Identity probes and the fixed questions have no real answer and are not judged; an empty
answer is not sent (counted as skipped_empty).

Requests go through lib.llm_client (complete_all with its JSONL cache, as 04 uses it): each
verdict is appended to the cache the moment it arrives, and a rerun repeats no finished
request. The order of each pair depends only on evaluate.judge_seed and the comparison's own
system, prompt id and seed, so adding a system changes no other pair and no cached verdict.
The verdict is the first standalone "A" or "B" of the reply after reasoning is stripped
(lib.qa_clean.strip_reasoning); a reply without one is counted as unparsed, never guessed.

A judge is only as good as its model: the embedded 135M SmolLM2 (evaluate.judge_base_url:
null) cannot tell anyone's writing from anyone else's, so its verdicts mean nothing; it
exercises the mechanics. Use a strong model through evaluate.judge_base_url.
"""
from __future__ import annotations

import hashlib
import re
from pathlib import Path

from lib.authorship import DRAWS, grouped_bootstrap
from lib.llm_client import Endpoint, api_key_from_env, chat_request, complete_all
from lib.qa_clean import strip_reasoning

JUDGED_TASKS = ("knowledge", "title")  # 07's prompt tasks that carry the person's real answer
MIN_REAL_WORDS = 20  # a title's real opening has at least this many words
# a standalone capital A or B: not part of a word or of a label like "A1"
LETTER = re.compile(r"(?<!\w)([AB])(?!\w)")
# "A" followed by a lowercase word that is not a verb of a verdict is the article ("A careful reader...")
ARTICLE_A = re.compile(r"A[ \t]+(?!(?:is|was|seems|sounds|reads|looks|appears|feels|because|since)\b)[a-z]")


# ---------------------------------------------------------------- the pairs


def real_opening(text: str, words: int) -> str:
    """The first `words` whitespace-separated words of text (whitespace runs become one space)."""
    return " ".join(text.split()[:max(0, words)])


def pair_order(judge_seed: int, system: str, prompt_id: str, seed: int) -> str:
    """Where the real answer goes, "A" or "B": a seeded coin that depends only on these four
    values (sha256), so it is the same on every run and for any set of systems."""
    digest = hashlib.sha256(f"{judge_seed}|{system}|{prompt_id}|{seed}".encode()).digest()
    return "A" if digest[0] & 1 else "B"


def build_comparisons(prompts: list[dict], answers: dict[str, list[dict]], judge_seed: int) -> tuple[list[dict], dict]:
    """Every (system answer, the person's real answer) pair to judge, in system then answer order.

    prompts: 07's prompts (lib.eval_prompts.build_prompts); those of JUDGED_TASKS with a
    "reference" are judged. answers: {system: answer records ({"id", "task", "seed",
    "question", "answer"}, as lib.eval_answers.run_system returns them)}. Returns (comparisons,
    {system: empty answers skipped}); a comparison is {"system", "id", "task", "seed",
    "question", "answer" (the system's), "real" (the person's), "real_position" ("A" or "B")}.
    A title's real answer is the essay's opening cut to the answer's word count (at least
    MIN_REAL_WORDS words). Raises KeyError when an answer's prompt id is not among prompts.
    """
    known = {p["id"] for p in prompts}
    references = {p["id"]: p["reference"] for p in prompts if p["task"] in JUDGED_TASKS and p.get("reference")}
    comparisons, skipped = [], {}
    for system, records in answers.items():
        skipped[system] = 0
        for record in records:
            if record["task"] not in JUDGED_TASKS:
                continue
            if record["id"] not in known:
                raise KeyError(f"{system}: answer to prompt {record['id']!r}, which is not among the prompts")
            reference = references.get(record["id"])
            if not reference:
                continue
            answer = " ".join(record["answer"].split())
            if not answer:
                skipped[system] += 1
                continue
            real = reference if record["task"] == "knowledge" else \
                real_opening(reference, max(len(answer.split()), MIN_REAL_WORDS))
            comparisons.append({"system": system, "id": record["id"], "task": record["task"], "seed": record["seed"],
                                "question": record["question"], "answer": answer, "real": " ".join(real.split()),
                                "real_position": pair_order(judge_seed, system, record["id"], record["seed"])})
    return comparisons, skipped


def judge_messages(comparison: dict, persona_name: str) -> list[dict]:
    """The chat messages that ask the judge about one comparison (system + user message)."""
    real_first = comparison["real_position"] == "A"
    first, second = (comparison["real"], comparison["answer"]) if real_first else \
        (comparison["answer"], comparison["real"])
    system = (f"You judge authorship. You are shown a question and two answers to it. One answer is the real "
              f"{persona_name}'s own words; the other was written by an AI imitating {persona_name}. Decide which "
              f"one is the real {persona_name}. Reply with a single letter: A or B.")
    user = (f"Question: {comparison['question']}\n\nAnswer A:\n{first}\n\nAnswer B:\n{second}\n\n"
            f"Which answer is the real {persona_name}'s? Reply with only the letter A or B.")
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


# ---------------------------------------------------------------- verdicts


def parse_verdict(raw: str | None) -> str | None:
    """The judge's verdict in a reply: "A", "B", or None when there is none (unparsed).

    Reasoning blocks are removed first (lib.qa_clean.strip_reasoning; a reply whose reasoning was
    cut off keeps only what came before it). The verdict is the first standalone capital A
    or B (not inside a word: "Bob", "AB" and "A1" do not count; "**B**", "(A)", "Answer: B."
    do), where an "A" followed by an ordinary lowercase word ("A careful reader...") is the
    article and is skipped, but "A is the real one" counts. A reply that names both letters
    is read by its first one; lowercase letters are never verdicts.
    """
    if not raw:
        return None
    text, _, _ = strip_reasoning(raw)
    for match in LETTER.finditer(text):
        if match.group(1) == "A" and ARTICLE_A.match(text, match.start()):
            continue
        return match.group(1)
    return None


# ---------------------------------------------------------------- asking the judge


def judge_endpoint(ev: dict, timeout_s: float, server=None) -> Endpoint:
    """The judge's Endpoint from params evaluate (judge_base_url, judge_model,
    judge_api_key_env); a started embedded server (lib.llama_server.LlamaServer) gives the URL
    and model instead when judge_base_url is null. timeout_s: seconds per request. Raises
    RuntimeError when judge_api_key_env names an unset variable (the key is only ever read
    from the environment), ValueError when there is neither a URL nor a server."""
    key = api_key_from_env(ev["judge_api_key_env"], "evaluate.judge_api_key_env")
    url = ev["judge_base_url"] or (server.base_url if server else None)
    if not url:
        raise ValueError("no judge endpoint: evaluate.judge_base_url is null and no local server was started")
    model = ev["judge_model"] if ev["judge_base_url"] else server.model
    return Endpoint(url.rstrip("/"), model, key, float(timeout_s))


def run_judge(comparisons: list[dict], persona_name: str, endpoint: Endpoint, cache_path: Path, *,
              judge_seed: int, max_tokens: int, concurrency: int = 2, retries: int = 4,
              backoff_s: float = 1.0) -> tuple[list[dict], list[dict]]:
    """Ask the judge about every comparison once (temperature 0, seed judge_seed, at most
    max_tokens tokens per reply), through complete_all's cache at cache_path (JSONL; a rerun
    answers finished requests from it and sends only the rest).

    Returns (judged, results): judged is each comparison with "raw" (the reply, None when the
    request failed for good), "verdict" ("A", "B" or None), "passes" (True when the judge took
    the system's answer for the real one, None without a verdict), "cached" and "error";
    results is complete_all's list (lib.llm_client.summarize counts it).
    """
    bodies = [chat_request(endpoint.model, judge_messages(c, persona_name), temperature=0.0, max_tokens=max_tokens,
                           seed=judge_seed) for c in comparisons]
    results = complete_all(bodies, endpoint, cache_path, concurrency, retries, backoff_s, desc="judge")
    judged = []
    for comparison, result in zip(comparisons, results):
        verdict = parse_verdict(result["content"])
        judged.append(dict(comparison, raw=result["content"], verdict=verdict, cached=result["cached"],
                           error=result["error"],
                           passes=None if verdict is None else verdict != comparison["real_position"]))
    return judged, results


# ---------------------------------------------------------------- rates


def judge_rates(judged: list[dict], skipped_empty: dict | None = None, draws: int = DRAWS,
                seed: int = 1234) -> dict[str, dict]:
    """Per system, in first-seen order (systems only in skipped_empty come last):
    {"pass_rate", "pass_ci_low", "pass_ci_high" (the share of parsed verdicts that took the
    system's answer for the real one, with a bootstrap 95% CI over questions), "says_a_rate",
    "says_a_ci_low", "says_a_ci_high" (the share of parsed verdicts that say "A"), "n" (parsed
    verdicts), "questions" (prompts with a parsed verdict), "comparisons", "unparsed" (a reply
    with no verdict), "failed" (requests that failed for good), "skipped_empty"}. Rates are
    fractions in [0, 1], None without a parsed verdict. judged: run_judge's records (only
    "system", "id", "verdict", "passes" and "raw" are read)."""
    by_system: dict[str, list[dict]] = {}
    for j in judged:
        by_system.setdefault(j["system"], []).append(j)
    for name in skipped_empty or {}:
        by_system.setdefault(name, [])
    rates = {}
    for name, records in by_system.items():
        parsed = [j for j in records if j["verdict"] is not None]
        passes: dict[str, list[int]] = {}
        says_a: dict[str, list[int]] = {}
        for j in parsed:
            passes.setdefault(j["id"], []).append(int(j["passes"]))
            says_a.setdefault(j["id"], []).append(int(j["verdict"] == "A"))
        pass_rate, pass_low, pass_high = grouped_bootstrap(list(passes.values()), draws, seed)
        a_rate, a_low, a_high = grouped_bootstrap(list(says_a.values()), draws, seed)
        rates[name] = {"pass_rate": pass_rate, "pass_ci_low": pass_low, "pass_ci_high": pass_high,
                       "says_a_rate": a_rate, "says_a_ci_low": a_low, "says_a_ci_high": a_high,
                       "n": len(parsed), "questions": len(passes), "comparisons": len(records),
                       "unparsed": sum(j["verdict"] is None and j["raw"] is not None for j in records),
                       "failed": sum(j["raw"] is None for j in records),
                       "skipped_empty": (skipped_empty or {}).get(name, 0)}
    return rates


def judge_markdown(rates: dict[str, dict], judge_label: str, embedded: bool) -> str:
    """A markdown block: which judge, a warning when it is the embedded model, and a table
    with one row per system: passes as the person [95% CI], says "A" [95% CI], parsed
    verdicts, unparsed, failed and skipped empty answers."""
    lines = [f"Judge: {judge_label}." + (" **The embedded 135M model is the judge: its verdicts mean nothing "
                                          "(only the mechanics are exercised).**" if embedded else ""), "",
             "| system | passes as the person [95% CI] | judge says \"A\" [95% CI] | verdicts | unparsed | failed "
             "| empty, not judged |",
             "|---|---:|---:|---:|---:|---:|---:|"]

    def cell(rate, low, high):
        return "–" if rate is None else f"{rate:.2f} [{low:.2f}, {high:.2f}]"

    for name, r in rates.items():
        lines.append(f"| {name} | {cell(r['pass_rate'], r['pass_ci_low'], r['pass_ci_high'])} | "
                     f"{cell(r['says_a_rate'], r['says_a_ci_low'], r['says_a_ci_high'])} | {r['n']} | "
                     f"{r['unparsed']} | {r['failed']} | {r['skipped_empty']} |")
    return "\n".join(lines)

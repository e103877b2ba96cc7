"""The authorship verifier (lib/authorship.py, lib/eval_authorship.py) on real text: the
committed snapshots split as 02 splits them, the real embedded model writing the base
model's text through llama.cpp, and `python -m lib.style_metrics authorship`.

Validation, per persona: the person's held-out documents score high, the other persona's
text scores low, and the base model answering the person's own evaluation questions under
the persona's system prompt (right topic, wrong voice) scores low."""
import json
import os
import subprocess

import pytest

from conftest import PYTHON, ROOT
from lib.authorship import TooShortError, distinguishability, distort, system_authorship, windows
from lib.params import load_params
from lib.runfiles import write_json, write_jsonl

pytestmark = pytest.mark.slow
OTHER = {"pg": "trump", "trump": "pg"}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """runs/<persona>/01_scrape and 02_split for both personas (3 newest documents held out),
    in a temporary RUNS_DIR."""
    from lib.eval_authorship import snapshot_documents
    from lib.split import choose_heldout

    root = tmp_path_factory.mktemp("runs")
    saved = os.environ.get("RUNS_DIR")
    os.environ["RUNS_DIR"] = str(root)
    docs = {}
    for persona in ("pg", "trump"):
        documents = snapshot_documents(persona)
        heldout = choose_heldout(documents, "newest", 3, 1234)
        write_jsonl(root / persona / "01_scrape" / "documents.jsonl", documents)
        write_json(root / persona / "02_split" / "split.json",
                   {"train_ids": [d["id"] for d in documents if d["id"] not in heldout], "heldout_ids": heldout})
        docs[persona] = {"train": [d for d in documents if d["id"] not in heldout],
                         "heldout": [d for d in documents if d["id"] in heldout]}
    yield {"root": root, "docs": docs}
    if saved is None:
        os.environ.pop("RUNS_DIR", None)
    else:
        os.environ["RUNS_DIR"] = saved


@pytest.fixture(scope="module", params=["pg", "trump"])
def verifier(request, runs):
    from lib.eval_authorship import persona_verifier

    persona = request.param
    return persona, persona_verifier(persona, "cpu"), runs["docs"]


def own_questions(persona: str, docs: dict) -> list[str]:
    """Questions the person answers, never used to build the verifier: 07's questions for pg
    (evaluate.questions_file), the interviewers' questions of the held-out interviews for trump."""
    from lib.qa_sources import interview_exchanges

    if persona == "pg":
        return json.loads((ROOT / "data" / "eval" / "pg_questions.json").read_text())["questions"][1:]
    return [e["question"] for doc in docs[persona]["heldout"] for e in interview_exchanges(doc, 25, 350, 60)][:4]


def base_answers(persona: str, questions: list[str], seed: int, system_prompt: bool = True, n_seeds: int = 2) -> list[str]:
    """The embedded model answering the questions under the persona's system prompt (or none),
    with n_seeds sampling seeds from `seed` on."""
    from lib.models import embedded_gguf_path
    from lib.gguf_checks import chat_with_gguf

    params = load_params(persona, "cpu")
    system = [{"role": "system", "content": params["persona"]["system_prompt"]}] if system_prompt else []
    conversations = [system + [{"role": "user", "content": q}] for q in questions]
    replies = chat_with_gguf(embedded_gguf_path("smollm2-135m-instruct"), conversations, 160, seed=seed, n_seeds=n_seeds)
    return [r["text"] for r in replies]


def test_the_person_scores_high_and_others_low(verifier):
    from lib.eval_authorship import persona_text

    persona, model, docs = verifier
    for doc in docs[persona]["heldout"]:
        result = model.score(persona_text(doc))
        assert result["p_person"] > 0.7 and result["ci_low"] > 0.5, (doc["id"], result)
        assert 0 <= result["ci_low"] <= result["p_person"] <= result["ci_high"] <= 1
    for doc in docs[OTHER[persona]]["heldout"]:
        result = model.score(persona_text(doc))
        assert result["p_person"] < 0.3 and result["ci_high"] < 0.5, (doc["id"], result)


def test_the_base_model_on_the_persons_own_questions_scores_low(verifier):
    persona, model, docs = verifier
    result = system_authorship(model, base_answers(persona, own_questions(persona, docs), seed=7))
    assert result["n"] >= 4 and result["p_person"] < 0.3 and result["ci_high"] < 0.5, result


def test_two_sampling_seeds_rank_systems_alike_where_their_cis_do_not_overlap(verifier):
    """Systems: the person's held-out paragraphs, and the base model with and without the
    persona's system prompt; the answers sampled with one seed, then with another."""
    from lib.eval_authorship import persona_text

    persona, model, docs = verifier
    paragraphs = [p for d in docs[persona]["heldout"] for p in persona_text(d).split("\n\n")]
    questions = own_questions(persona, docs)
    first, second = ({"person": system_authorship(model, paragraphs),
                      "prompted base": system_authorship(model, base_answers(persona, questions, seed, n_seeds=1)),
                      "plain base": system_authorship(model, base_answers(persona, questions, seed, False, n_seeds=1))}
                     for seed in (11, 13))
    separated = [(a, b) for a in first for b in first if first[a]["ci_low"] > first[b]["ci_high"]]
    assert ("person", "prompted base") in separated, first
    for a, b in separated:
        assert second[a]["p_person"] > second[b]["p_person"], (a, b, first, second)


def test_a_prompt_whose_answers_are_all_too_short_is_left_out_of_the_bootstrap(verifier):
    """A chat model's one-line answers to some prompts: those prompts have no judged answer and
    no bootstrap group (a cpu run of 2026-11-30 stopped 07 with ZeroDivisionError here), unless
    its answers joined are long enough."""
    persona, model, docs = verifier
    from lib.split import persona_text

    words = persona_text(docs[persona]["heldout"][0]).split()
    long_answer = " ".join(words[:120])
    answers = ["I'm the person.", "Yes.", long_answer, long_answer, "Short again."]
    result = system_authorship(model, answers, ["p1", "p1", "p2", "p3", "p4"], draws=300)
    assert result["n"] == 2 and result["too_short"] == 3 and result["pooled"] == 0
    assert 0 <= result["ci_low"] <= result["p_person"] <= result["ci_high"] <= 1
    # two seeds' answers to one prompt, each too short alone (30 words), are judged joined
    halves = [" ".join(words[120:150]), " ".join(words[150:180])]
    pooled = system_authorship(model, answers + halves, ["p1", "p1", "p2", "p3", "p4", "p5", "p5"], draws=300)
    assert pooled["n"] == 4 and pooled["pooled"] == 2 and pooled["too_short"] == 3
    if persona == "pg":  # the person's own words, joined, still read as the person's
        assert pooled["p_person"] > 0.5, pooled


def test_distinguishability_is_near_half_for_the_person_and_high_for_others(verifier):
    from lib.eval_authorship import persona_text

    persona, model, docs = verifier
    heldout = [persona_text(d) for d in docs[persona]["heldout"]]
    pieces = [w for text in heldout for w in windows(text)]
    same = distinguishability(pieces[0::2], ["\n\n".join(pieces[1::2])], model.keep)
    other = [w for d in docs[OTHER[persona]]["heldout"] for w in windows(persona_text(d))][:40]
    different = distinguishability(other, heldout, model.keep)
    assert same is not None and different is not None
    assert different > 0.9 and same < different - 0.2, (same, different)


def test_distortion_keeps_function_words_and_masks_topic():
    keep = frozenset({"the", "of", "to", "and", "i", "it's"})
    assert distort("The  price of Bitcoin rose to $4,200 in 2021, and I think it's\ngreat.", keep) == \
        "The ***** of ******* **** to $#,### ** ####, and I ***** it's *****."
    with pytest.raises(TooShortError, match="12 words; the measure judges texts of at least 40 words"):
        windows("one two three four five six seven eight nine ten eleven twelve")


def test_command_line_scores_each_file_and_names_the_bad_ones(verifier, tmp_path):
    from lib.eval_authorship import persona_text

    persona, _, docs = verifier
    good = tmp_path / "heldout.txt"
    good.write_text(persona_text(docs[persona]["heldout"][0]))
    empty, short = tmp_path / "empty.txt", tmp_path / "short.txt"
    empty.write_text("  \n")
    short.write_text("I am the greatest writer there ever was.")
    result = subprocess.run([PYTHON, "-m", "lib.style_metrics", "authorship", persona, str(empty), str(good),
                             str(short), str(tmp_path / "missing.txt"), "--profile", "cpu"],
                            cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 1, result.stderr[-2000:]
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["file"] for r in lines] == [str(good)] and set(lines[0]) == {"file", "p_person", "ci_low", "ci_high", "words"}
    assert lines[0]["p_person"] > 0.7
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [f"error: {empty}: empty file",
                      f"error: {short}: too short to judge: 8 words; the measure judges texts of at least 40 words",
                      f"error: {tmp_path / 'missing.txt'}: cannot read: [Errno 2] No such file or directory: "
                      f"'{tmp_path / 'missing.txt'}'"]


def test_a_persona_without_a_split_is_told_which_make_target_to_run(tmp_path):
    env = dict(os.environ, RUNS_DIR=str(tmp_path))
    result = subprocess.run([PYTHON, "-m", "lib.style_metrics", "authorship", "pg", "x.txt"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert "run `make pg-split` first" in result.stderr and result.stdout == ""

"""Stage 07's pieces on real data and the real model: prompts from held-out documents, the
answers file that survives a kill, llama.cpp answers and perplexity against transformers',
adapters loaded for scoring, every measure on real text, the report and the PROGRESS.md log."""
import json
import signal
import subprocess
import time

import pytest

from conftest import PYTHON, ROOT
from lib import eval_answers, eval_prompts, eval_report, eval_scores, eval_systems, progress_log, qa_sources
from lib.eval_systems import BASELINE, System
from lib.models import embedded_gguf_path
from lib.params import load_params, read_questions
from lib.split import persona_text, split_paragraphs

FIXTURES = ROOT / "tests" / "fixtures" / "style"
BASE = "embedded:smollm2-135m-instruct"


def read_documents(name):
    return [json.loads(line) for line in (FIXTURES / name).read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def pg_docs():
    return read_documents("pg_documents.jsonl")


@pytest.fixture(scope="module")
def trump_docs():
    return read_documents("trump_documents.jsonl")


@pytest.fixture
def params():
    """The smoke profile, one seed, answers of a few tokens."""
    p = load_params("pg", "smoke")
    p["evaluate"].update(seeds=[1], max_new_tokens=12, identity_max_new_tokens=8, identity_phrasings=3,
                         identity_adversarial=1)
    return p


# ---------------------------------------------------------------- inputs and prompts

def test_read_questions_names_the_file_and_the_problem(tmp_path):
    assert read_questions(ROOT / "data/eval/pg_questions.json")[0] == "Who are you?"
    assert len(read_questions(ROOT / "data/eval/trump_questions.json")) == 5
    with pytest.raises(FileNotFoundError, match="missing.json: questions file not found"):
        read_questions(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"questions": ["Who are you?",]}')
    with pytest.raises(ValueError, match="bad.json: not valid JSON"):
        read_questions(bad)
    bad.write_text('["Who are you?"]')
    with pytest.raises(ValueError, match=r'bad.json: expected \{"questions"'):
        read_questions(bad)


def test_identity_probes_are_not_what_04_trains_on():
    from lib.eval_identity import ADVERSARIAL_PROBES_FILE, PLAIN_PROBES_FILE, probes
    from lib.qa_identity import asks_identity
    plain, adversarial = probes(30, PLAIN_PROBES_FILE), probes(10, ADVERSARIAL_PROBES_FILE)
    assert len(set(plain)) == 30 and len(set(adversarial)) == 10 and not set(plain) & set(adversarial)
    # templates filled in: "You're {other}, right?" had been the adversarial probe "You're Nancy Pelosi, right?"
    assert not [p for p in plain + adversarial if asks_identity(p)]
    with pytest.raises(ValueError, match="identity_probes.json: 31 probes asked for, but the file has 30"):
        probes(31, PLAIN_PROBES_FILE)


def test_persona_text_and_the_reference_split(trump_docs):
    doc = trump_docs[0]
    text = persona_text(doc)
    assert text.startswith("OK.\n\nI would hit them so hard.")      # Trump's turns only
    assert "How are you going to defeat ISIS?" not in text              # not O'Reilly's
    reference, own = eval_prompts.reference_and_own_text(trump_docs[:2])
    parts = split_paragraphs(persona_text(trump_docs[0]) + "\n\n" + persona_text(trump_docs[1]))
    assert split_paragraphs(reference) == parts[0::2] and split_paragraphs(own) == parts[1::2]
    with pytest.raises(ValueError, match=r"held-out documents \['x'\] have 1 paragraph"):
        eval_prompts.reference_and_own_text([{"id": "x", "kind": "essay", "text": "One paragraph only."}])


def test_knowledge_exchanges_are_real_questions_and_answers(trump_docs):
    exchanges = eval_prompts.knowledge_exchanges(trump_docs[:2], count=5)
    assert len(exchanges) == 5
    assert [e["doc_id"] for e in exchanges] == ["trump-0", "trump-1", "trump-0", "trump-1", "trump-0"]
    answers = persona_text(trump_docs[0]) + persona_text(trump_docs[1])
    for e in exchanges:
        assert e["question"].endswith("?") or e["question"][-1] in "-—." or len(e["question"].split()) >= 3
        assert len(e["answer"].split()) >= 25
        assert e["answer"].split()[0] in answers


def test_build_prompts(pg_docs, trump_docs, params):
    ev = dict(params["evaluate"], essay_titles=2, interview_questions=3)
    pg_prompts = eval_prompts.build_prompts(pg_docs[:3], ["Who are you?"], ev)
    assert [p["task"] for p in pg_prompts] == ["identity"] * 3 + ["identity_adversarial", "questions", "title", "title"]
    title = pg_prompts[5]
    assert title["header"] == f"Title: {pg_docs[0]['title']}\nDate: {pg_docs[0]['date']}\n\n"
    assert title["question"] == f'Write your essay "{pg_docs[0]["title"]}".'
    assert title["reference"] == pg_docs[0]["text"] and title["max_new_tokens"] == 12
    assert pg_prompts[0]["max_new_tokens"] == 8
    trump_prompts = eval_prompts.build_prompts(trump_docs[:2], ["Who are you?"], ev)
    assert [p["task"] for p in trump_prompts].count("knowledge") == 3
    assert not [p for p in trump_prompts if p["task"] == "title"]
    # 04's questions on held-out essay passages: knowledge prompts whose reference is the passage
    passages = qa_sources.essay_passages(pg_docs[0], 25, 350, 120)[:2]
    asked = [{"doc_id": p["doc_id"], "question": f"Why {i}?", "answer": p["text"]} for i, p in enumerate(passages)]
    with_questions = eval_prompts.build_prompts(pg_docs[:3], ["Who are you?"], ev, asked)
    assert with_questions[:len(pg_prompts)] == pg_prompts
    knowledge = with_questions[len(pg_prompts):]
    assert [(p["task"], p["question"], p["reference"]) for p in knowledge] == \
        [("knowledge", a["question"], a["answer"]) for a in asked]
    assert len({p["id"] for p in with_questions}) == len(with_questions)
    assert all(p["max_new_tokens"] == 12 for p in knowledge)


def test_find_quant(tmp_path):
    for name in ("pg-chat-f16.gguf", "pg-chat-q4_k_m.gguf", "pg-chat-q8_0.gguf", "pg-chat-adapter-f16.gguf",
                 "imatrix-q4_k_m.gguf"):
        (tmp_path / name).write_bytes(b"GGUF")
    assert eval_systems.find_quant(tmp_path, "f16").name == "pg-chat-f16.gguf"
    assert eval_systems.find_quant(tmp_path, "q4_k_m").name == "pg-chat-q4_k_m.gguf"
    with pytest.raises(FileNotFoundError, match=r"expected one q5_k_m GGUF \(evaluate.gguf_levels\), found 0 "
                                                r"\(the folder has: imatrix-q4_k_m.gguf, "):
        eval_systems.find_quant(tmp_path, "q5_k_m")


def test_find_systems(tmp_path):
    completion, chat, quant = tmp_path / "03_completion", tmp_path / "05_chat", tmp_path / "06_quantize"
    for folder in (completion / "adapter", chat / "adapter", chat / "base", quant):
        folder.mkdir(parents=True)
    (completion / "adapter" / "adapter_config.json").write_text("{}")
    (chat / "adapter" / "adapter_config.json").write_text("{}")
    for name in ("pg-f16.gguf", "pg-q4_k_m.gguf", "pg-completion-lora-f16.gguf"):
        (quant / name).write_bytes(b"GGUF")
    with pytest.raises(FileNotFoundError, match="05_chat/base: no merged completion model"):
        eval_systems.find_systems(completion, chat, quant, ["f16", "q4_k_m"])
    (chat / "base" / "config.json").write_text("{}")
    systems = eval_systems.find_systems(completion, chat, quant, ["f16", "q4_k_m"])
    assert [s.name for s in systems] == [BASELINE, "completion", "chat", "gguf_f16", "gguf_q4_k_m"]
    assert systems[0].adapters == [] and systems[0].base_model("embedded:x") == "embedded:x"
    assert systems[1].adapters == [completion / "adapter"] and systems[1].writes_from_headers
    assert systems[2].adapters == [chat / "adapter"] and systems[2].base_model("embedded:x") == str(chat / "base")
    assert systems[4].gguf == quant / "pg-q4_k_m.gguf" and systems[4].base == str(chat / "base")
    without = eval_systems.find_systems(completion, chat, quant, ["q4_k_m"], completion=False)  # the cpu profile
    assert [s.name for s in without] == [BASELINE, "chat", "gguf_q4_k_m"]
    (chat / "adapter" / "adapter_config.json").unlink()
    with pytest.raises(FileNotFoundError, match="05_chat/adapter: no LoRA adapter"):
        eval_systems.find_systems(completion, chat, quant, ["f16"])


def test_answers_file_ignores_a_line_cut_by_a_kill(tmp_path):
    path = tmp_path / "answers.jsonl"
    eval_answers.append_answers(path, [{"key": "a", "answer": "one"}, {"key": "b", "answer": "two"}])
    with open(path, "a") as handle:
        handle.write('{"key": "c", "ans')
    assert sorted(eval_answers.read_answer_cache(path)) == ["a", "b"]
    eval_answers.append_answers(path, [{"key": "c", "answer": "three"}])   # the resumed run goes on
    assert [json.loads(line)["key"] for line in path.read_text().splitlines()] == ["a", "b", "c"]
    path.write_text('{"key": "a"}\nnot json\n{"key": "b"}\n')
    with pytest.raises(ValueError, match="answers.jsonl:2: not valid JSON"):
        eval_answers.read_answer_cache(path)


# ---------------------------------------------------------------- the real model

def test_transformers_answers_are_cached_and_reused(tmp_path, params, pg_docs):
    prompts = eval_prompts.build_prompts(pg_docs[:1], ["How do I find a co-founder?"], params["evaluate"])
    texts = [" ".join(pg_docs[1]["text"].split()[:60])]
    result = eval_answers.run_system(System(BASELINE), prompts, texts, params, tmp_path)
    first = result["answers"]
    assert 5 < result["heldout_ppl"] < 200
    assert [a["task"] for a in first] == ["identity"] * 3 + ["identity_adversarial", "questions", "title"]
    assert all(a["answer"].strip() for a in first)
    lines = (tmp_path / f"{BASELINE}.jsonl").read_text().splitlines()
    assert len(lines) == 6
    started = time.time()
    again = eval_answers.run_system(System(BASELINE), prompts, texts, params, tmp_path)
    assert again == result and (tmp_path / f"{BASELINE}.jsonl").read_text().splitlines() == lines
    assert time.time() - started < 2                                # nothing loaded, nothing generated
    # another sampling setting is another answer
    params["evaluate"]["temperature"] = 0.9
    eval_answers.run_system(System(BASELINE), prompts[:1], texts, params, tmp_path)
    assert len((tmp_path / f"{BASELINE}.jsonl").read_text().splitlines()) == 7


KILLABLE_RUN = """
import sys, json
sys.path.insert(0, {root!r})
from pathlib import Path
from lib import eval_answers, eval_prompts, eval_systems
from lib.models import embedded_gguf_path
from lib.params import load_params
from lib.split import split_paragraphs
p = load_params("pg", "smoke")
p["evaluate"].update(seeds=[1], identity_max_new_tokens=12, identity_phrasings=6, identity_adversarial=0)
prompts = eval_prompts.build_prompts([], [], dict(p["evaluate"], essay_titles=0, interview_questions=0))
system = eval_systems.System("gguf_q4_1", gguf=embedded_gguf_path("smollm2-135m-instruct"))
result = eval_answers.run_system(system, prompts, [], p, Path(sys.argv[1]))
print(json.dumps([a["answer"] for a in result["answers"]]))
"""


def test_gguf_answers_survive_a_kill(tmp_path):
    """llama.cpp answers (the embedded GGUF) in a subprocess killed midway: the rerun
    answers only what is missing, and ends with the answers of an uninterrupted run."""
    script = tmp_path / "answer.py"
    script.write_text(KILLABLE_RUN.format(root=str(ROOT)))
    killed, whole = tmp_path / "killed", tmp_path / "whole"
    answers_file = killed / "gguf_q4_1.jsonl"
    process = subprocess.Popen([PYTHON, str(script), str(killed)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and process.poll() is None:
        if answers_file.is_file() and len(answers_file.read_text().splitlines()) >= 2:
            process.send_signal(signal.SIGKILL)
            break
        time.sleep(0.05)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    before = answers_file.read_text().splitlines()
    assert 2 <= len(before) < 6
    resumed = subprocess.run([PYTHON, str(script), str(killed)], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    after = answers_file.read_text().splitlines()
    complete_lines = [line for line in before if line.endswith("}")]
    assert after[:len(complete_lines)] == complete_lines          # nothing finished was answered again
    assert len({json.loads(line)["key"] for line in after}) == len(after) == 6
    uninterrupted = subprocess.run([PYTHON, str(script), str(whole)], capture_output=True, text=True, timeout=300)
    assert json.loads(resumed.stdout) == json.loads(uninterrupted.stdout)


def test_gguf_answers_draw_their_own_random_numbers_per_prompt(tmp_path):
    """One question under six prompt ids, one seed: llama.cpp restarts its sampler from the
    request's seed, so with the seed itself in every request all six answers were the same
    text (and 07's identity probes failed together: PROGRESS 2026-12-01 03:05)."""
    from lib.runfiles import derived_seed

    p = load_params("pg", "smoke")
    p["evaluate"].update(seeds=[1], temperature=1.0, top_p=1.0)
    prompts = [{"task": "questions", "id": f"q{i}", "question": "Tell me about your work.", "max_new_tokens": 16}
               for i in range(6)]
    system = System("gguf_q4_1", gguf=embedded_gguf_path("smollm2-135m-instruct"))
    answers = [a["answer"] for a in eval_answers.run_system(system, prompts, [], p, tmp_path)["answers"]]
    assert len(set(answers)) >= 3, answers
    seeds = {derived_seed(1, f"q{i}") for i in range(6)}
    assert len(seeds) == 6 and all(0 <= s < 2**31 for s in seeds) and derived_seed(1, "q0") == derived_seed(1, "q0")


def test_gguf_sampling_penalizes_generated_tokens_only_and_scales_before_top_p():
    import numpy as np

    processor = eval_answers.TransformersSampling(temperature=0.5, repetition_penalty=2.0)
    logits = np.array([2.0, 1.0, -1.0, 0.5], dtype=np.float32)
    assert processor(np.array([1, 2]), logits).tolist() == [4.0, 2.0, -2.0, 1.0]  # the prompt: no penalty
    # tokens 1 (positive logit: divided) and 2 (negative: multiplied) generated since
    assert processor(np.array([1, 2, 1, 2]), logits).tolist() == [4.0, 1.0, -4.0, 1.0]
    sampling = eval_answers.gguf_sampling({"temperature": 0.7, "top_p": 0.9, "repetition_penalty": 1.1})
    assert sampling["temperature"] == 1.0 and sampling["repeat_penalty"] == 1.0 and sampling["min_p"] == 0.0


def test_gguf_sampling_reaches_llama_cpp():
    """With the temperature applied in the logits processor, a near-zero temperature must
    give the greedy answer whatever the seed: llama.cpp itself samples at temperature 1."""
    from lib.llama import load_llama

    llm = load_llama(str(embedded_gguf_path("smollm2-135m-instruct")), n_ctx=512)
    try:
        messages = [{"role": "user", "content": "Name three colours."}]
        greedy = llm.create_chat_completion(messages, max_tokens=16, temperature=0.0)["choices"][0]["message"]["content"]
        cold = {"temperature": 1e-4, "top_p": 1.0, "repetition_penalty": 1.0}
        sampled = [llm.create_chat_completion(messages, max_tokens=16, seed=seed, **eval_answers.gguf_sampling(cold))
                   ["choices"][0]["message"]["content"] for seed in (1, 2, 3)]
        hot = {"temperature": 5.0, "top_p": 1.0, "repetition_penalty": 1.0}
        wild = {llm.create_chat_completion(messages, max_tokens=16, seed=seed, **eval_answers.gguf_sampling(hot))
                ["choices"][0]["message"]["content"] for seed in (1, 2, 3)}
    finally:
        llm.close()
    assert sampled == [greedy] * 3
    assert len(wild) == 3  # the processor's temperature is what llama.cpp samples with


def test_gguf_perplexity_agrees_with_transformers(tmp_path, pg_docs, params):
    """The embedded Q4_1 GGUF through llama.cpp and its dequantized transformers twin score
    the same held-out text within 5%."""
    texts = [" ".join(doc["text"].split()[:120]) for doc in pg_docs[:2]]
    base_ppl = eval_answers.run_system(System(BASELINE), [], texts, params, tmp_path)["heldout_ppl"]
    gguf = System("gguf_q4_1", gguf=embedded_gguf_path("smollm2-135m-instruct"))
    gguf_ppl = eval_answers.run_system(gguf, [], texts, params, tmp_path)["heldout_ppl"]
    assert 5 < base_ppl < 200
    assert abs(gguf_ppl / base_ppl - 1) < 0.05


def test_an_adapter_is_applied_when_scoring(tmp_path, pg_docs, params):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from lib.models import resolve_model

    texts = [" ".join(pg_docs[2]["text"].split()[:100])]
    model = AutoModelForCausalLM.from_pretrained(resolve_model(BASE), dtype=torch.float32)
    peft_model = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    peft_model.save_pretrained(tmp_path / "zero")       # lora_B starts at 0: the adapter is a no-op
    torch.manual_seed(0)
    for name, weight in peft_model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(weight, std=0.5)
    peft_model.save_pretrained(tmp_path / "noisy")
    ppl = {system.name: eval_answers.run_system(system, [], texts, params, tmp_path / "answers")["heldout_ppl"]
           for system in (System(BASELINE), System("zero", [tmp_path / "zero"]), System("noisy", [tmp_path / "noisy"]))}
    base_ppl, zero_ppl, noisy_ppl = ppl[BASELINE], ppl["zero"], ppl["noisy"]
    assert zero_ppl == pytest.approx(base_ppl, rel=1e-4)
    assert noisy_ppl > 2 * base_ppl


# ---------------------------------------------------------------- measures, report, log

def fake_answers(system, texts, identity):
    """Answer records of one system: identity answers, then question answers."""
    records = [{"system": system, "task": "identity", "id": f"identity-{i}", "seed": 1, "question": "Who are you?",
                "answer": a} for i, a in enumerate(identity)]
    records += [{"system": system, "task": "questions", "id": f"question-{i}", "seed": 1, "question": f"Q{i}?",
                 "answer": t} for i, t in enumerate(texts)]
    return records


def test_measures_on_real_text(pg_docs, trump_docs):
    """Trump's interview answers stand in for a base model that does not sound like Paul
    Graham, PG's own essays (not held out) for a chat model that does, and the same essays
    with "Ah, friend," for the original finetune's tic."""
    heldout, train = pg_docs[:4], pg_docs[8:]
    trump_turns = [t["text"] for d in trump_docs for t in d["turns"] if t["is_persona"] and len(t["text"].split()) > 30]
    # paragraphs of four other essays, taken in turn, so no one essay's topic dominates
    per_essay = [[p for p in split_paragraphs(d["text"]) if len(p.split()) > 30] for d in pg_docs[4:8]]
    pg_paragraphs = [ps[rank] for rank in range(max(map(len, per_essay))) for ps in per_essay if rank < len(ps)]
    answers = {
        BASELINE: fake_answers(BASELINE, trump_turns[:25], ["I'm Nancy Pelosi.", "As an AI, I have no name.",
                                                            "I'm Paul Graham."]),
        "chat": fake_answers("chat", pg_paragraphs[:25], ["I'm Paul Graham.", "Paul Graham here.",
                                                          "My name is Paul Graham, I write essays."]),
        "ticced": fake_answers("ticced", [f"Ah, friend, {p}" for p in pg_paragraphs[:25]], ["I'm Sam Altman."] * 3),
    }
    title_prompt = {"task": "title", "id": "title-0", "question": "Write your essay.", "reference": heldout[0]["text"]}
    for name, text in ((BASELINE, " ".join(trump_turns[25:30])), ("chat", " ".join(pg_paragraphs[25:30])),
                       ("ticced", " ".join(pg_paragraphs[30:35]))):
        answers[name].append({"system": name, "task": "title", "id": "title-0", "seed": 1,
                              "question": title_prompt["question"], "answer": text})
    scores = eval_scores.score_systems(answers, [title_prompt], heldout, train, "Paul Graham")
    assert scores["identity_rate"] == {BASELINE: pytest.approx(1 / 3), "chat": 1.0, "ticced": 0.0}
    assert scores["style_score"][BASELINE] == 0.0 and scores["style_score"]["own_text"] == 1.0
    assert scores["style_score"]["chat"] > 0.5
    assert scores["tics"]["ticced"] == ["friend", "ah"] and scores["tic_rate"]["ticced"] > 0.02
    assert scores["tic_rate"]["chat"] == 0.0 and scores["tic_rate"]["own_text"] == 0.0
    assert 0.5 < scores["distinct_2"]["chat"] <= 1 and scores["repeated_3gram_rate"]["chat"] < 0.05
    assert scores["knowledge_rouge_l"]["chat"] is None
    assert all(0.05 < scores["title_rouge_l"][n] < 0.5 for n in answers)
    assert scores["title_style_score"][BASELINE] == 0.0 and scores["title_style_score"]["chat"] > 0.3

    names = [BASELINE, "chat", "ticced"]
    table = eval_report.measures_table(dict(scores, heldout_ppl={n: 10.0 for n in names}), names)
    assert table.splitlines()[0].startswith("| system | identity rate | style score")
    assert "knowledge" not in table.splitlines()[0]              # no value for an essay persona
    assert "| chat | 1.000 |" in table and "| person's own held-out text | – |" in table
    report = eval_report.render_report(persona_name="Paul Graham", persona="pg", profile="smoke",
                                    systems=[System(n) for n in names], metrics=scores, answers=answers,
                                    prompts=[title_prompt],
                                    seeds=[1])
    assert "## Measures" in report and '- ticced: "friend", "ah"' in report
    assert "claims to be Nancy Pelosi" in report and "says 'As an AI'" in report
    assert "### Q0?" in report
    assert "Caution" not in report                                   # samples of 750+ words
    short = dict(scores, style_words={n: 120 for n in scores["style_words"]})
    assert "Caution: some style scores compare samples of only 120 words" in eval_report.render_report(
        persona_name="Paul Graham", persona="pg", profile="smoke", systems=[System(n) for n in names],
        metrics=short, answers=answers, prompts=[title_prompt], seeds=[1])


def test_progress_log_appends_and_never_rewrites(tmp_path):
    log = tmp_path / "PROGRESS.md"
    header = "# Progress finetuning\n\nWritten by the lead.\n"
    log.write_text(header)
    completion = {"lora_r": 16, "lora_alpha": 32, "learning_rate": 0.0005, "max_steps": 40, "num_epochs": 1.0,
                  "batch_size": 2, "grad_accum": 1, "warmup_steps": 10, "seed": 1234}
    entry = progress_log.progress_entry(
        title=progress_log.run_title("Paul Graham", "cpu"), key="k1", model="smollm2 + LoRA", data="3 documents",
        train={"completion": progress_log.train_setup(completion, {"backend": "unsloth", "dtype": "bfloat16",
                                                                    "batching": "length_grouped", "final_train_loss": 2.5})},
        final_loss={"completion": 2.5},
        measures_table="| system | identity rate |\n|---|---:|\n| chat | 1.000 |",
        samples=[{"question": "Who are you?", "system": "chat", "answer": "I'm   Paul\nGraham."}],
        persona_name="Paul Graham", report_path="runs/pg/07_evaluate/report.md")
    assert ("**Train Setup**: completion: max_steps = 40, batch_size = 2, grad_accum = 1, learning_rate = 0.0005, "
            "lora_r = 16, lora_alpha = 32, warmup_steps = 10, backend = unsloth, dtype = bfloat16, "
            "batching = length_grouped <br>") in entry      # no num_epochs with max_steps; what the run used
    assert "**Final loss**: completion 2.5 <br>" in entry
    assert "User: Who are you?\nPaul Graham (chat): I'm Paul Graham." in entry
    assert entry.index("**Model**") < entry.index("**Data**") < entry.index("**Final loss**") < entry.index("**Conclusion**")
    assert progress_log.append_entry(log, entry, "k1") is True
    assert progress_log.append_entry(log, entry, "k1") is False            # the same run is not logged twice
    second = entry.replace("k1", "k2")
    assert progress_log.append_entry(log, second, "k2") is True
    text = log.read_text()
    assert text.startswith(header) and text.count("### Paul Graham: cpu run") == 2
    new_log = tmp_path / "new" / "PROGRESS.md"
    new_log.parent.mkdir()
    progress_log.append_entry(new_log, entry, "k1")
    assert new_log.read_text().startswith(progress_log.NEW_LOG_HEADER)

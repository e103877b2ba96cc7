"""Stage 04's sources of chat data whose answers are the person's own words.

- backtranslation: a passage of the person's real text is the answer; an LLM only writes the
  question it answers (backtranslation_passages, backtranslation_messages).
- interviews: real interviewer question -> persona answer turns, single and short
  multi-turn windows (interview_conversations).
- own_questions: a question the person asks in an essay, answered by the text that follows
  it (own_question_conversations).
- llm_answers (off by default): an LLM answers prompts "as the person" (llm_answer_messages).

Identity answers are lib.qa_identity's; cleaning the LLM's output is lib.qa_clean's, tics
lib.tics', near-duplicate questions lib.qa_duplicates'.
"""
from __future__ import annotations

import random
import re

from lib.qa_clean import question_problem
from lib.records import Conversation, Document
from lib.text import light_trim, split_sentences, trailing_sentences, trim_to_words, word_count

SOURCES = ("backtranslation", "interviews", "own_questions", "identity", "llm_answers")


def check_documents(documents: list[Document], where: str) -> None:
    """Raise ValueError naming `where` (the file) and the line of the first document that
    does not follow the 01_scrape contract as far as this stage needs it."""
    if not documents:
        raise ValueError(f"{where}: no documents")
    for number, doc in enumerate(documents, 1):
        problem = None
        if not isinstance(doc, dict) or not isinstance(doc.get("id"), str):
            problem = "has no string 'id'"
        elif doc.get("kind") == "interview":
            turns = doc.get("turns")
            if not isinstance(turns, list) or not all(
                    isinstance(t, dict) and isinstance(t.get("text"), str) and "is_persona" in t for t in turns):
                problem = "is an interview without 'turns': [{speaker, text, is_persona}, ...]"
        elif doc.get("kind") == "essay":
            if not isinstance(doc.get("text"), str):
                problem = "is an essay without a string 'text'"
        else:
            problem = f"has kind {doc.get('kind')!r}; expected 'essay' or 'interview'"
        if problem:
            name = doc.get('id') if isinstance(doc, dict) else None
            raise ValueError(f"{where}:{number}: document {name or '(no id)'} {problem}")


def training_documents(documents: list[Document], heldout_ids) -> list[Document]:
    """The documents that may be used: every one whose id is not held out by 02."""
    heldout = set(heldout_ids)
    kept = [doc for doc in documents if doc["id"] not in heldout]
    if not kept:
        raise ValueError(f"all {len(documents)} documents are held out; nothing to build chat data from")
    return kept


BOILERPLATE_PARAGRAPH = re.compile(r"^(thanks to .{0,300}(draft|reading|read)|if you liked this|"
                                   r"related:|translations?:|this essay (is|was) (derived|adapted))", re.I)


def is_heading(paragraph: str) -> bool:
    """A short line without closing punctuation ("1. Stanford University", "Notes")."""
    return word_count(paragraph) <= 8 and not re.search(r"[.!?:;\"'”’)]$", paragraph.strip())


def essay_sections(doc: dict) -> list[list[str]]:
    """An essay's paragraphs (light_trim'd, boilerplate like "Thanks to ... for reading drafts"
    dropped) in runs between section headings: [[paragraph, ...], ...]."""
    sections, current = [], []
    for raw in re.split(r"\n\s*\n", doc.get("text") or ""):
        paragraph = light_trim(raw)
        if not paragraph or BOILERPLATE_PARAGRAPH.match(paragraph):
            continue
        if is_heading(paragraph):
            sections.append(current)
            current = []
            continue
        current.append(paragraph)
    sections.append(current)
    return [section for section in sections if section]


def essay_passages(doc: dict, min_words: int, max_words: int, target_words: int) -> list[dict]:
    """Consecutive paragraphs of an essay grouped into passages of about target_words
    (never over max_words, never under min_words; a section heading starts a new
    passage; an over-long paragraph is cut at a sentence end)."""
    passages = []

    def keep(paragraphs: list[str]) -> None:
        text = "\n\n".join(paragraphs)
        if paragraphs and word_count(text) >= min_words:
            passages.append({"doc_id": doc["id"], "title": doc.get("title"), "text": text})

    for section in essay_sections(doc):
        current: list[str] = []
        for paragraph in section:
            paragraph = trim_to_words(paragraph, max_words)
            if paragraph is None:
                continue
            if current and word_count("\n\n".join(current + [paragraph])) > max_words:
                keep(current)
                current = []
            current.append(paragraph)
            if word_count("\n\n".join(current)) >= target_words:
                keep(current)
                current = []
        keep(current)
    return passages


# A question the person asks and then answers ("Why do investors like startups so much? ...") is a
# question a reader could ask them. It must stand alone: asked the way a user would ask it, with
# nothing that points back into the essay ("How could that be true?", "Why does he think this?")
# and no first person ("What should I do next?" is the author's own story, not the user's question).
OWN_QUESTION = re.compile(r"^(?:(?:so|and|but|now|well),?\s+)?((?:how|what|why|who|where|when|which|is|are|can|"
                          r"could|should|would|will|do|does|did)\b[^?]*\?)$", re.I)
NEEDS_CONTEXT = re.compile(r"\b(i|me|my|we|us|our|he|she|him|her|his|they|them|their|this|these|those|such)\b|"
                           r"\b(that|then|it|there)\?$|\b(could|would|can|is|does|did|was) (that|it|this)\b|^how about\b", re.I)


def own_question(sentence: str, max_question_words: int) -> str | None:
    """The sentence as a reader's question (a leading "So"/"But" dropped, first letter
    capitalized), or None when it is no standalone question (OWN_QUESTION, NEEDS_CONTEXT,
    lib.qa_clean.question_problem)."""
    match = OWN_QUESTION.match(sentence.strip())
    if not match or NEEDS_CONTEXT.search(match.group(1)):
        return None
    question = match.group(1)[0].upper() + match.group(1)[1:]
    return None if question_problem(question, max_question_words) else question


def own_question_conversations(documents: list[Document], min_words: int, max_words: int, target_words: int,
                               max_question_words: int, system_prompt: str) -> list[Conversation]:
    """Questions the person asks in their own essays, each answered by the text that follows it
    (the rest of its paragraph, then whole paragraphs of the same section until target_words,
    never over max_words): no LLM, real question, real answer. A question counts where it opens
    a paragraph or closes one (its answer is then the next paragraph) and stands alone
    (own_question). Answers under min_words are dropped. Interviews have real questions
    already (interview_conversations)."""
    records = []
    for doc in documents:
        if doc.get("kind") == "interview":
            continue
        for section in essay_sections(doc):
            for index, paragraph in enumerate(section):
                sentences = split_sentences(paragraph)
                for position in sorted({0, len(sentences) - 1}):  # opens or closes the paragraph
                    question = own_question(sentences[position], max_question_words)
                    if question is None:
                        continue
                    answer = [" ".join(sentences[position + 1:])] if position + 1 < len(sentences) else []
                    for following in section[index + 1:]:
                        if word_count("\n\n".join(answer)) >= target_words:
                            break
                        if word_count("\n\n".join(answer + [following])) > max_words:
                            break
                        answer.append(following)
                    text = trim_to_words("\n\n".join(answer), max_words) or ""
                    if word_count(text) >= min_words:
                        records.append(conversation([(question, text)], "own_questions", system_prompt, doc["id"]))
    return records


def merged_turns(doc: dict) -> list[dict]:
    """An interview's turns with consecutive turns of the same side (persona or not)
    joined: [{"is_persona", "speaker", "text"}], text lightly trimmed, empty turns dropped."""
    merged = []
    for turn in doc.get("turns") or []:
        text = light_trim(turn.get("text") or "")
        if not text:
            continue
        if merged and merged[-1]["is_persona"] == bool(turn["is_persona"]):
            merged[-1]["text"] += " " + text
        else:
            merged.append({"is_persona": bool(turn["is_persona"]), "speaker": turn.get("speaker"), "text": text})
    return merged


QUESTION_START = re.compile(
    r"^(what|why|how|when|where|who|whom|whose|which|do|does|did|is|are|was|were|can|could|would|will|"
    r"should|shall|have|has|had|may|might|tell|talk|explain|describe|give|share|walk|let's talk|"
    r"let me ask|i want to ask|i wanted to ask)\b", re.I)


def is_real_question(text: str) -> bool:
    """An interviewer turn that asks something: at least 3 words, and a '?' or an
    interrogative/request start in its last sentence ("Tell me about ...", "What will ... —")."""
    if word_count(text) < 3:
        return False
    if "?" in text:
        return True
    last = (split_sentences(text) or [text])[-1].strip()
    if QUESTION_START.match(last.strip(" \"'“‘—-")):
        return True
    interrupted = re.search(r"(—|–|-|\.\.\.|…)$", last)
    return bool(interrupted and re.search(r"\b(what|why|how|when|where|who|which)\b", last, re.I))


def interview_exchanges(doc: dict, min_answer_words: int, max_answer_words: int,
                        max_question_words: int) -> list[dict]:
    """Real question -> persona answer pairs of one interview: {"index", "question",
    "answer"} where index is the answer's position in merged_turns. Fragments and
    non-answers (a non-question before, an answer under min_answer_words) are left out;
    over-long answers are cut at a sentence end, over-long questions keep their end."""
    turns = merged_turns(doc)
    exchanges = []
    for index in range(1, len(turns)):
        question, answer = turns[index - 1], turns[index]
        if not answer["is_persona"] or question["is_persona"]:
            continue
        if not is_real_question(question["text"]) or word_count(answer["text"]) < min_answer_words:
            continue
        q = trailing_sentences(question["text"], max_question_words)
        a = trim_to_words(answer["text"], max_answer_words)
        if q and a and word_count(a) >= min_answer_words:
            exchanges.append({"index": index, "question": q, "answer": a})
    return exchanges


def interview_passages(doc: dict, used_indexes: set, min_words: int, max_words: int) -> list[dict]:
    """Persona turns that no real question asks for (a monologue after "Thank you."), as
    backtranslation passages."""
    passages = []
    for index, turn in enumerate(merged_turns(doc)):
        if not turn["is_persona"] or index in used_indexes:
            continue
        text = trim_to_words(turn["text"], max_words)
        if text and word_count(text) >= min_words:
            passages.append({"doc_id": doc["id"], "title": doc.get("title"), "text": text})
    return passages


def backtranslation_passages(documents: list[dict], min_words: int, max_words: int, target_words: int,
                             max_question_words: int, max_passages: int, seed: int) -> list[dict]:
    """Passages of real text to write questions for: essay passages, and interview turns
    that answer no real question. At most max_passages (0 = all), a seeded sample kept in
    document order."""
    passages = []
    for doc in documents:
        if doc.get("kind") == "interview":
            used = {e["index"] for e in interview_exchanges(doc, min_words, max_words, max_question_words)}
            passages += interview_passages(doc, used, min_words, max_words)
        else:
            passages += essay_passages(doc, min_words, max_words, target_words)
    return sample_in_order(passages, max_passages, seed) if max_passages else passages


def sample_in_order(items: list, count: int, seed: int) -> list:
    """At most `count` of items: all of them when there are no more, else a seeded sample
    kept in the items' order."""
    if len(items) <= count:
        return items
    return [items[i] for i in sorted(random.Random(seed).sample(range(len(items)), count))]


def heldout_question_passages(documents: list[Document], heldout_ids, min_words: int, max_words: int,
                               target_words: int, count: int, seed: int) -> list[dict]:
    """Passages of 02's held-out essays (essay_passages), for questions that only 07 asks:
    their real answer is the person's held-out text, as a held-out interview's answers are.
    Never chat data. At most `count` (0 = none), a seeded sample kept in document order."""
    heldout = set(heldout_ids)
    essays = [doc for doc in documents if doc["id"] in heldout and doc.get("kind") != "interview"]
    return sample_in_order([p for doc in essays for p in essay_passages(doc, min_words, max_words, target_words)],
                           count, seed)


def backtranslation_messages(passage: dict, persona_name: str) -> list[dict]:
    """The prompt that asks an LLM for the question a passage answers. Plain enough for the
    embedded 135M model, which otherwise tends to edit or discuss the passage instead."""
    return [
        {"role": "system", "content": "You write one short interview question. Reply with the question only."},
        {"role": "user", "content": (
            f"Text by {persona_name} (\"{passage['title']}\"):\n\n{passage['text']}\n\n"
            f"Write a short question a reader could ask {persona_name} that this text answers. "
            f"Address {persona_name} as \"you\". Start with What, Why or How and end with a question mark.")},
    ]


def llm_answer_messages(prompt: str, persona_name: str, system_prompt: str) -> list[dict]:
    """The original approach (source llm_answers): an LLM answers a prompt as the person."""
    system = system_prompt or f"You are {persona_name}. Answer in your own voice."
    return [{"role": "system", "content": system}, {"role": "user", "content": prompt}]


def conversation(turns: list[tuple[str, str]], source: str, system_prompt: str, doc_id: str | None = None) -> Conversation:
    """A chat record: system prompt (when set), then user/assistant turns."""
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    for question, answer in turns:
        messages += [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    return {"messages": messages, "source": source, "doc_id": doc_id}


def interview_conversations(documents: list[Document], window: int, min_answer_words: int, max_answer_words: int,
                            max_question_words: int, system_prompt: str) -> list[dict]:
    """Every real exchange as a single-turn conversation, plus runs of 2..window exchanges
    that follow each other directly in the transcript as multi-turn conversations (in
    non-overlapping windows)."""
    records = []
    for doc in documents:
        if doc.get("kind") != "interview":
            continue
        exchanges = interview_exchanges(doc, min_answer_words, max_answer_words, max_question_words)
        for e in exchanges:
            records.append(conversation([(e["question"], e["answer"])], "interviews", system_prompt, doc["id"]))
        if window < 2:
            continue
        run: list[dict] = []
        for e in exchanges + [None]:
            if e is not None and run and e["index"] == run[-1]["index"] + 2 and len(run) < window:
                run.append(e)
                continue
            if len(run) >= 2:
                records.append(conversation([(x["question"], x["answer"]) for x in run], "interviews",
                                            system_prompt, doc["id"]))
            run = [e] if e is not None else []
    return records

"""07's prompts: the persona's fixed questions, real interviewer questions from held-out
interviews and 04's backtranslated questions on held-out essay passages (knowledge: each has
the person's real answer), held-out essay titles (title round trip), and the identity probes
(lib.eval_identity), each {"task", "id", "question", "max_new_tokens", ...}.
"""
from __future__ import annotations

from lib import qa_sources
from lib.eval_identity import identity_prompts
from lib.split import document_header, persona_text, split_paragraphs


def reference_and_own_text(heldout_docs: list[dict]) -> tuple[str, str]:
    """The held-out persona text split in two by alternate paragraphs: the reference that
    systems are scored against, and the person's own text scored against it (the style ceiling)."""
    parts = [p for doc in heldout_docs for p in split_paragraphs(persona_text(doc))]
    if len(parts) < 2:
        raise ValueError(f"held-out documents {[d['id'] for d in heldout_docs]} have {len(parts)} paragraph(s) "
                         "of the persona's text; need at least 2")
    return "\n\n".join(parts[0::2]), "\n\n".join(parts[1::2])


def knowledge_exchanges(heldout_docs: list[dict], count: int, min_answer_words: int = 25,
                        max_answer_words: int = 150) -> list[dict]:
    """Up to `count` real question -> answer exchanges from held-out interviews (04's rules for
    what is a real question and an answer), taken round-robin across the interviews."""
    per_doc = [[dict(e, doc_id=doc["id"]) for e in qa_sources.interview_exchanges(doc, min_answer_words, max_answer_words, 60)]
               for doc in heldout_docs if doc.get("kind") == "interview"]
    chosen = []
    for rank in range(max((len(x) for x in per_doc), default=0)):
        chosen += [exchanges[rank] for exchanges in per_doc if rank < len(exchanges)]
    return chosen[:count]


def build_prompts(heldout_docs: list[dict], questions: list[str], ev: dict,
                  heldout_questions: list[dict] = ()) -> list[dict]:
    """Every prompt of the evaluation, the same for every system:
    {"task", "id", "question", "header" (title task only), "reference" (knowledge/title), "max_new_tokens"}.
    heldout_questions: 04's questions on held-out essay passages ({"doc_id", "question",
    "answer"}, heldout_questions.jsonl), asked as knowledge prompts whose reference is the passage."""
    prompts = identity_prompts(ev["identity_phrasings"], ev["identity_adversarial"], ev["identity_max_new_tokens"])
    prompts += [{"task": "questions", "id": f"question-{i:02d}", "question": q, "max_new_tokens": ev["max_new_tokens"]}
                for i, q in enumerate(questions)]
    essays = [doc for doc in heldout_docs if doc.get("kind") != "interview"]
    for doc in essays[:ev["essay_titles"]]:
        prompts.append({"task": "title", "id": f"title-{doc['id']}", "question": f'Write your essay "{doc["title"]}".',
                        "header": document_header(doc), "reference": doc["text"], "max_new_tokens": ev["max_new_tokens"]})
    for i, ex in enumerate(knowledge_exchanges(heldout_docs, ev["interview_questions"])):
        prompts.append({"task": "knowledge", "id": f"knowledge-{ex['doc_id']}-{ex['index']}", "question": ex["question"],
                        "reference": ex["answer"], "max_new_tokens": ev["max_new_tokens"]})
    for i, item in enumerate(heldout_questions):
        prompts.append({"task": "knowledge", "id": f"knowledge-{item['doc_id']}-passage-{i:02d}",
                        "question": item["question"], "reference": item["answer"], "max_new_tokens": ev["max_new_tokens"]})
    return prompts

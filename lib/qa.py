"""Persona chat data (stage 04) whose answers are the person's own words.

Sources, each record tagged with its source:
- backtranslation: a passage of the person's real text is the answer; an LLM only writes the
  question it answers (backtranslation_passages, backtranslation_messages).
- interviews: real interviewer question -> persona answer turns, single and short
  multi-turn windows (interview_conversations).
- identity: first-person answers from params persona.profile_card to many phrasings of
  "who are you" questions (identity_conversations).
- llm_answers (off by default): an LLM answers prompts "as the person" (llm_answer_messages).

Cleaning, each step counted: clean_question / clean_answer (preambles, wrapping quotes,
refusals, empty or over-long items; clean_question also drops a reasoning model's <think>
blocks and removes replies whose reasoning was cut off), find_tics (phrases
over-represented in generated text compared with the real corpus) and
remove_near_duplicates.
"""
from __future__ import annotations

import math
import random
import re
from collections import Counter

SOURCES = ("backtranslation", "interviews", "identity", "llm_answers")

# ---------------------------------------------------------------- documents and text


def check_documents(documents: list[dict], where: str) -> None:
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


def training_documents(documents: list[dict], heldout_ids) -> list[dict]:
    """The documents that may be used: every one whose id is not held out by 02."""
    heldout = set(heldout_ids)
    kept = [doc for doc in documents if doc["id"] not in heldout]
    if not kept:
        raise ValueError(f"all {len(documents)} documents are held out; nothing to build chat data from")
    return kept


def word_count(text: str) -> int:
    return len(text.split())


STAGE_DIRECTION = re.compile(r"\s*[\(\[](?:[A-Z][A-Z ,'-]{2,}|inaudible|crosstalk|laughter|applause|"
                             r"laughs|unintelligible)[\)\]]", re.I)
FOOTNOTE_MARKER = re.compile(r"\s?\[\d{1,2}\]")
SENTENCE_END = re.compile(r"(?<=[.!?])[\"'”’)]*\s+")


def light_trim(text: str) -> str:
    """The only edits made to the person's words: footnote markers ([1]), stage
    directions ((APPLAUSE), [inaudible]) and a transcript's leading "--" (the turn
    continues an interruption) removed, whitespace normalized."""
    text = FOOTNOTE_MARKER.sub("", text)
    text = STAGE_DIRECTION.sub("", text)
    return re.sub(r"^(?:-{2,}|[—–])\s*", "", " ".join(text.split()))


def sentences(text: str) -> list[str]:
    return [s for s in SENTENCE_END.split(text) if s.strip()]


def trim_to_words(text: str, max_words: int) -> str | None:
    """The longest run of whole leading sentences within max_words (None if even the
    first sentence is longer). Text already within the limit is returned unchanged."""
    if word_count(text) <= max_words:
        return text
    kept, total = [], 0
    for sentence in sentences(text):
        n = word_count(sentence)
        if total + n > max_words:
            break
        kept.append(sentence)
        total += n
    return " ".join(kept) if kept else None


def trailing_sentences(text: str, max_words: int) -> str | None:
    """The longest run of whole trailing sentences within max_words (an interviewer's
    preamble is dropped, the question at the end kept)."""
    if word_count(text) <= max_words:
        return text
    kept, total = [], 0
    for sentence in reversed(sentences(text)):
        n = word_count(sentence)
        if total + n > max_words:
            break
        kept.insert(0, sentence)
        total += n
    return " ".join(kept) if kept else None


# ---------------------------------------------------------------- backtranslation

BOILERPLATE_PARAGRAPH = re.compile(r"^(thanks to .{0,300}(draft|reading|read)|if you liked this|"
                                   r"related:|translations?:|this essay (is|was) (derived|adapted))", re.I)


def is_heading(paragraph: str) -> bool:
    """A short line without closing punctuation ("1. Stanford University", "Notes")."""
    return word_count(paragraph) <= 8 and not re.search(r"[.!?:;\"'”’)]$", paragraph.strip())


def essay_passages(doc: dict, min_words: int, max_words: int, target_words: int) -> list[dict]:
    """Consecutive paragraphs of an essay grouped into passages of about target_words
    (never over max_words, never under min_words; a section heading starts a new
    passage; an over-long paragraph is cut at a sentence end)."""
    passages, current = [], []

    def emit():
        text = "\n\n".join(current)
        if word_count(text) >= min_words:
            passages.append({"doc_id": doc["id"], "title": doc.get("title"), "text": text})
        current.clear()

    for raw in re.split(r"\n\s*\n", doc.get("text") or ""):
        paragraph = light_trim(raw)
        if not paragraph or BOILERPLATE_PARAGRAPH.match(paragraph):
            continue
        if is_heading(paragraph):
            emit()
            continue
        paragraph = trim_to_words(paragraph, max_words)
        if paragraph is None:
            continue
        if current and word_count("\n\n".join(current + [paragraph])) > max_words:
            emit()
        current.append(paragraph)
        if word_count("\n\n".join(current)) >= target_words:
            emit()
    emit()
    return passages


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
    last = (sentences(text) or [text])[-1].strip()
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
    if max_passages and len(passages) > max_passages:
        chosen = sorted(random.Random(seed).sample(range(len(passages)), max_passages))
        passages = [passages[i] for i in chosen]
    return passages


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


# ---------------------------------------------------------------- conversations


def conversation(turns: list[tuple[str, str]], source: str, system_prompt: str, doc_id: str | None = None) -> dict:
    """A chat record: system prompt (when set), then user/assistant turns."""
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    for question, answer in turns:
        messages += [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    return {"messages": messages, "source": source, "doc_id": doc_id}


def interview_conversations(documents: list[dict], window: int, min_answer_words: int, max_answer_words: int,
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


# ---------------------------------------------------------------- identity

IDENTITY_QUESTIONS = {
    "name": ["What's your name?", "What is your name?", "Who are you?", "Who am I talking to?",
             "Who is this?", "Can you introduce yourself?", "Introduce yourself.", "Tell me your name.",
             "What should I call you?", "Who are you, exactly?", "Hi! Who are you?", "Hello, what's your name?",
             "May I ask who you are?", "Who am I speaking with?", "What do people call you?",
             "Sorry, who are you again?", "Hey, what's your name?", "I'm not sure who you are. Who are you?",
             "Please tell me who you are.", "Are you going to tell me your name?"],
    "about": ["Tell me about yourself.", "Tell me a bit about yourself.", "Describe yourself in a few sentences.",
              "Give me a short introduction of yourself.", "What's your background?"],
    "full_name": ["What's your full name?", "What is your full name?"],
    "born": ["When were you born?", "Where were you born?", "Where are you from?", "Where did you grow up?",
             "What's your date of birth?", "Where do you come from?"],
    "age": ["How old are you?", "What's your age?"],
    "known_for": ["What are you known for?", "What are you famous for?", "Why are you famous?",
                  "What do people know you for?", "Why should I know who you are?"],
    "work": ["What do you do?", "What's your job?", "What do you do for a living?", "What do you work on?",
             "What kind of work do you do?"],
    "lives_in": ["Where do you live?", "Where do you live these days?", "Where's home for you?",
                 "Where are you based?"],
    "family": ["Are you married?", "Tell me about your family.", "Do you have a family?"],
    "party": ["What party are you in?", "Are you a Democrat or a Republican?",
              "Which political party do you belong to?"],
    "current_year": ["What year is it?", "What's the current year?", "Do you know what year it is?",
                     "What year is it now?"],
    "not_other": ["Are you {other}?", "You're {other}, right?", "Is this {other}?"],
    # 07's adversarial probes (data/eval/identity_adversarial.json) are longer phrasings none of these repeat
    "not_ai": ["Are you an AI?", "Are you a bot?", "Are you a chatbot?", "Am I talking to a computer?",
               "Is this an AI?", "Are you a computer program?", "Are you a machine?", "Are you ChatGPT?",
               "Are you a robot?", "Is this a bot I'm talking to?", "Are you an assistant?",
               "Are you SmolLM?", "Are you an AI model?", "Is this an automated chat?"],
}
OTHER_PEOPLE = ["Nancy Pelosi", "Joe Biden", "Barack Obama", "Hillary Clinton", "Elon Musk", "Bill Gates",
                "Mark Zuckerberg", "Sam Altman", "Steve Jobs", "Oprah Winfrey", "Donald Trump", "Paul Graham"]
MONTH_START = re.compile(r"^(january|february|march|april|may|june|july|august|september|october|"
                         r"november|december)\b", re.I)
KNOWN_CARD_KEYS = {"name", "full_name", "born", "known_for", "work", "lives_in", "family", "party", "current_year"}


def sentence_case(text: str) -> str:
    text = text.strip()
    return text[:1].upper() + text[1:] if text else text


def period(text: str) -> str:
    text = text.strip()
    return text if re.search(r"[.!?]$", text) else text + "."


def born_phrase(born: str) -> str:
    """'1964, in Weymouth' -> 'in 1964, in Weymouth'; 'June 14, 1946, ...' -> 'on June 14, 1946, ...'."""
    if MONTH_START.match(born):
        return f"on {born}"
    if re.match(r"^\d", born):
        return f"in {born}"
    return born


def identity_answers(card: dict, name: str) -> dict[str, list[str]]:
    """First-person answers per question category, built only from the card's facts."""
    card = {k: str(v).strip() for k, v in card.items() if str(v).strip()}
    name = card.get("name", name)
    answers: dict[str, list[str]] = {}
    intro = ""
    if "work" in card:
        intro = period(sentence_case(card["work"]))
    elif "known_for" in card:
        intro = f"I'm known for {period(card['known_for'])}"
    answers["name"] = [f"I'm {name}.", f"My name is {name}.", f"I'm {name}. {intro}".strip(),
                       f"{name}. {intro}".strip()]
    about = [f"I'm {name}.", intro]
    if "born" in card:
        about.append(f"I was born {period(born_phrase(card['born']))}")
    if "lives_in" in card:
        about.append(f"I live in {period(card['lives_in'])}")
    answers["about"] = [" ".join(s for s in about if s)]
    if "full_name" in card:
        answers["full_name"] = [f"My full name is {card['full_name']}.", f"{card['full_name']}."]
    if "born" in card:
        answers["born"] = [f"I was born {period(born_phrase(card['born']))}"]
        year = re.search(r"\b(1[89]\d\d|20\d\d)\b", card["born"])
        now = re.search(r"\b(20\d\d)\b", card.get("current_year", ""))
        if year and now:
            age = int(now.group(1)) - int(year.group(1))
            answers["age"] = [f"I was born in {year.group(1)}, so I turn {age} in {now.group(1)}.",
                              f"I turn {age} in {now.group(1)}."]
    if "known_for" in card:
        answers["known_for"] = [f"I'm known for {period(card['known_for'])}", f"Mostly for {period(card['known_for'])}"]
    if "work" in card:
        answers["work"] = [period(sentence_case(card["work"]))]
    elif "known_for" in card:
        answers["work"] = [f"I'm {name}. I'm known for {period(card['known_for'])}"]
    if "lives_in" in card:
        answers["lives_in"] = [f"I live in {period(card['lives_in'])}", f"{period(sentence_case(card['lives_in']))}"]
    if "family" in card:
        family = card["family"]
        answers["family"] = [f"I'm {period(family)}" if re.match(r"^(married|single|divorced|engaged|widowed)\b", family, re.I)
                             else f"My family: {period(family)}"]
    if "party" in card:
        answers["party"] = [f"I'm a {period(card['party'])}", f"{period(sentence_case(card['party']))}"]
    if "current_year" in card:
        answers["current_year"] = [f"It's {card['current_year']}.", f"It's {card['current_year']} now."]
    answers["not_other"] = [f"No, I'm {name}.", f"No. I'm {name}.", f"No, you're talking to {name}."]
    answers["not_ai"] = [f"No, I'm {name}.", f"No. I'm {name}.", f"No, you're talking to {name}.",
                         f"No. I'm {name}. {intro}".strip()]
    return {category: list(dict.fromkeys(texts)) for category, texts in answers.items()}


def identity_target(other_count: int, share: float, minimum: int) -> int:
    """How many identity conversations to add to `other_count` conversations so that they make
    `share` (a fraction in [0, 1)) of the final set, and at least `minimum`. A count alone
    (60 then) left interview personas with 3% identity data and the model unsure who it is
    (PROGRESS.md, 2026-11-30 18:01). ValueError for a share outside [0, 1)."""
    if not 0 <= share < 1:
        raise ValueError(f"qa.identity_share must be in [0, 1), got {share}")
    return max(minimum, math.ceil(share * other_count / (1 - share)))


def identity_conversations(card: dict, name: str, count: int, seed: int, system_prompt: str) -> list[dict]:
    """`count` distinct identity question/answer pairs (fewer when the card has too few
    facts), drawn round-robin over the categories the card can answer, seeded."""
    rng = random.Random(seed)
    answers = identity_answers(card, name)
    pools = {}
    for category, phrasings in IDENTITY_QUESTIONS.items():
        if category not in answers:
            continue
        questions = phrasings
        if category == "not_other":
            others = [p for p in OTHER_PEOPLE if p.lower() != name.lower()]
            questions = [q.format(other=o) for q in phrasings for o in others]
        pairs = [(q, a) for q in questions for a in answers[category]]
        rng.shuffle(pairs)
        # one answer per question first, then the other answer variants
        seen, first, rest = set(), [], []
        for q, a in pairs:
            (rest if q in seen else first).append((q, a))
            seen.add(q)
        pools[category] = first + rest
    records = []
    while len(records) < count and any(pools.values()):
        for category in list(pools):
            if pools[category] and len(records) < count:
                q, a = pools[category].pop(0)
                records.append(conversation([(q, a)], "identity", system_prompt))
    return records


def unused_card_keys(card: dict) -> list[str]:
    """profile_card keys that no identity question uses (reported, not an error)."""
    return sorted(set(card) - KNOWN_CARD_KEYS)


# ---------------------------------------------------------------- cleaning generated text

PREAMBLES = [
    r"(sure|certainly|of course|okay|ok|absolutely|great|alright|yes)[!,.]*\s*",
    r"(here(?:'s| is| are)|this is|below is)\s[^:\n]{0,80}:\s*",
    r"(the\s)?(possible\s|potential\s|interview\s|generated\s|suggested\s)*(question|q)\s*(\d+)?\s*[:\-–]\s*",
    r"(answer|a)\s*[:\-–]\s*",
    r"as (an? )?[A-Z][^,\n]{0,60},\s+(?=i\b)",
]
PREAMBLE = re.compile(r"^(" + "|".join(PREAMBLES) + r")", re.I)
QUOTE_PAIRS = [('"', '"'), ("“", "”"), ("'", "'"), ("‘", "’"), ("«", "»"), ("**", "**"), ("*", "*"), ("`", "`")]
REFUSAL = re.compile(r"\b(i'm sorry|i am sorry|i apologi[sz]e|i cannot|i can't (help|assist|answer|provide)|"
                     r"as an ai|as a language model|i'm not able to|i am unable|i'm unable|i don't have (personal|access))",
                     re.I)
ABOUT_THE_PROMPT = re.compile(r"\b(the|this|that|above|given|following) (passage|text|excerpt|essay|paragraph|"
                              r"article|topic|question|answer)\b|\bthe author\b|\bwhat question\b|"
                              r"\b(your|my) (question|answer)\b|\bquestions?\b", re.I)
REQUEST_START = re.compile(r"^(tell|talk|explain|describe|give|share|walk)\b", re.I)


def strip_preambles_and_quotes(text: str) -> tuple[str, bool, bool]:
    """Repeatedly remove a leading preamble ("Sure! Here's a question:") and wrapping
    quotes or markdown emphasis; returns (text, preamble_removed, quotes_removed)."""
    text = text.strip()
    had_preamble = had_quotes = False
    for _ in range(6):
        before = text
        stripped = PREAMBLE.sub("", text, count=1).strip()
        if stripped != text and stripped:
            text, had_preamble = stripped, True
        for left, right in QUOTE_PAIRS:
            if len(text) > len(left) + len(right) and text.startswith(left) and text.endswith(right):
                inner = text[len(left):len(text) - len(right)].strip()
                if left not in inner or left != right:
                    text, had_quotes = inner, True
                    break
        if text == before:
            break
    return text, had_preamble, had_quotes


QUOTED_QUESTION = re.compile(r"[\"“]([^\"“”\n]*\?)")


def question_candidates(raw: str) -> list[tuple[str, dict]]:
    """Possible questions in a generated reply, in order: per line, questions in quotes
    ('The question: "Why ...?"'), then every sentence that ends in '?', else the whole line;
    each with preambles and wrapping quotes stripped, and flags saying what was removed."""
    candidates = []
    for line in (line.strip() for line in raw.splitlines()):
        if not line:
            continue
        preamble = bool(PREAMBLE.match(line))
        quoted = [m.group(1) for m in QUOTED_QUESTION.finditer(line)]
        spans = [m.group(0) for m in re.finditer(r"[^.!?:\n]*\?", line)] or [line]
        for span in quoted + spans:
            text, had_preamble, had_quotes = strip_preambles_and_quotes(span)
            text = text.lstrip("\"'“‘*`?!.,;:-— ").strip()
            flags = {"preamble": preamble or had_preamble, "quotes": had_quotes or span in quoted,
                     "extracted": text != line}
            candidates.append((text, flags))
    return candidates


def question_problem(text: str, max_words: int, persona_name: str = "") -> str | None:
    """Why a candidate question is unusable, or None."""
    if not text:
        return "empty"
    if word_count(text) > max_words:
        return "too_long"
    if ABOUT_THE_PROMPT.search(text):
        return "about_the_prompt"
    if persona_name and persona_name.lower() in text.lower():
        return "names_the_person"  # asked about them, not to them ("What do you think of Donald Trump?")
    content = [t for t in tokens(text) if is_word(t) and t not in STOPWORDS and t not in ("or", "mean", "many")]
    if word_count(text) < 4 or not content:
        return "too_vague"
    if not (text.endswith("?") or REQUEST_START.match(text)):
        return "not_a_question"
    return None


REASONING_BLOCK = re.compile(r"<(think|thinking)\b[^>]*>.*?</\1\s*>", re.I | re.S)
REASONING_OPEN = re.compile(r"<(?:think|thinking)\b[^>]*>", re.I)
REASONING_CLOSE = re.compile(r"</(?:think|thinking)\s*>", re.I)


def strip_reasoning(raw: str) -> tuple[str, bool, bool]:
    """A reply without the reasoning a reasoning model wrote into its content (a server run
    without a reasoning parser): <think>...</think> and <thinking>...</thinking> blocks;
    everything up to a closing tag whose opening tag is missing (some servers strip it);
    everything from an opening tag that is never closed (max_tokens ran out while the model
    was still reasoning). Returns (text, reasoning_removed, cut_off)."""
    text = REASONING_BLOCK.sub("\n", raw)
    closes = list(REASONING_CLOSE.finditer(text))
    if closes:
        text = text[closes[-1].end():]
    opening = REASONING_OPEN.search(text)
    if opening:
        text = text[:opening.start()]
    return text, text != raw, opening is not None


def clean_question(raw: str | None, max_words: int, persona_name: str = "") -> tuple[str | None, str, dict]:
    """A generated question, cleaned: the first usable question in the reply (reasoning
    blocks, a preamble, wrapping quotes, a following answer or a second question dropped).
    Returns (question or None, "ok" or why it was removed, {"preamble", "quotes",
    "extracted", "reasoning"}). A question that names the person (persona_name) talks about
    them rather than to them: removed. No question is taken from reasoning (strip_reasoning);
    a reply whose reasoning was cut off by max_tokens with no usable question before it is
    removed as "reasoning_cut_off"."""
    flags = {"preamble": False, "quotes": False, "extracted": False, "reasoning": False}
    if raw is None or not raw.strip():
        return None, "empty", flags
    raw, flags["reasoning"], cut_off = strip_reasoning(raw)
    first_problem = None
    if REFUSAL.search(raw):
        first_problem = "refusal"
    else:
        for text, candidate_flags in question_candidates(raw):
            problem = question_problem(text, max_words, persona_name)
            if problem is None:
                return text, "ok", dict(candidate_flags, reasoning=flags["reasoning"])
            first_problem = first_problem or problem
    if cut_off:
        return None, "reasoning_cut_off", flags
    return None, first_problem or "empty", flags


def clean_answer(raw: str | None, min_words: int, max_words: int) -> tuple[str | None, str, dict]:
    """An LLM-written answer (source llm_answers), cleaned like a question but kept whole:
    reasoning dropped first (strip_reasoning); reasoning cut off by max_tokens is
    "reasoning_cut_off"."""
    flags = {"preamble": False, "quotes": False, "reasoning": False}
    if raw is None or not raw.strip():
        return None, "empty", flags
    raw, flags["reasoning"], cut_off = strip_reasoning(raw)
    if cut_off:
        return None, "reasoning_cut_off", flags
    if not raw.strip():
        return None, "empty", flags
    if REFUSAL.search(raw):
        return None, "refusal", flags
    text, flags["preamble"], flags["quotes"] = strip_preambles_and_quotes(raw)
    if not text:
        return None, "empty", flags
    if word_count(text) > max_words:
        return None, "too_long", flags
    if word_count(text) < min_words:
        return None, "too_short", flags
    return text, "ok", flags


# ---------------------------------------------------------------- tics

STOPWORDS = set("""
a an the and or but if then else of to in on at by for with from as into onto about over under up down out off
is are was were be been being am do does did doing done have has had having will would shall should can could
may might must i me my mine we us our you your yours he him his she her they them their it its this that these
those there here what which who whom whose why how when where not no nor so too very just than also all any
each some such only own same more most other both few s t don't doesn't didn't isn't aren't can't won't i'm
you're it's that's there's what's i've you've i'd you'd i'll you'll let's think tell explain describe share
give talk walk ask question questions
""".split())
TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?|[^\sa-z0-9]")


def tokens(text: str) -> list[str]:
    """Lowercased words and single punctuation marks ("Ah, friend!" -> ah , friend !)."""
    return TOKEN.findall(text.lower().replace("’", "'").replace("‘", "'"))


def is_word(token: str) -> bool:
    return token[0].isalnum()


def candidate_phrases(toks: list[str], max_n: int = 3):
    """Word n-grams (1..max_n) that could be a tic: no leading stopword or punctuation,
    no trailing stopword, at least one content word; a trailing comma or exclamation mark
    is allowed ("ah ,"), other punctuation is not (every question ends in "?")."""
    for n in range(1, max_n + 1):
        for i in range(len(toks) - n + 1):
            gram = toks[i:i + n]
            if not is_word(gram[0]) or gram[0] in STOPWORDS:
                continue
            if any(not is_word(t) for t in gram[:-1]) or (not is_word(gram[-1]) and gram[-1] not in ",!"):
                continue
            if is_word(gram[-1]) and gram[-1] in STOPWORDS:
                continue
            if not any(is_word(t) and t not in STOPWORDS for t in gram):
                continue
            yield " ".join(gram)


def display_phrase(phrase: str) -> str:
    """'ah ,' -> 'ah,'"""
    return re.sub(r" ([^\sa-z0-9])", r"\1", phrase)


def phrase_sets(texts: list[str], max_n: int = 3) -> list[set]:
    """The candidate phrases of each text."""
    return [set(candidate_phrases(tokens(text), max_n)) for text in texts]


def real_corpus_texts(documents: list[dict]) -> list[str]:
    """The person's real text that generated text is compared with: essay paragraphs, and
    every turn of the interviews (both sides are real speech)."""
    texts = []
    for doc in documents:
        if doc.get("kind") == "interview":
            texts += [t["text"] for t in doc.get("turns") or [] if t.get("text")]
        else:
            texts += [p for p in re.split(r"\n\s*\n", doc.get("text") or "") if p.strip()]
    return texts


def find_tics(generated: list[str], real: list[str], min_count: int, min_ratio: float,
              grounding: list[str] | None = None, max_n: int = 3, top: int = 25) -> list[dict]:
    """Phrases over-represented in generated text compared with the real corpus.

    A phrase counts in a generated text only when that text's grounding (the passage a
    question was written for, the prompt an answer was written to) does not contain it:
    "writing" in a question about a passage on writing is the topic, not a tic. Rates are
    the share of texts containing the phrase (generated texts vs real paragraphs/turns, so
    short questions and long paragraphs compare fairly); ratio = generated share /
    ((real texts with it + 1) / (real texts + 1)). A phrase is a tic when it is in at
    least min_count generated texts and its ratio is at least min_ratio.

    Returns up to `top` rows by ratio, each {"phrase", "key", "generated_texts",
    "real_texts", "ratio", "tic"}; a longer phrase containing a flagged one is left out.
    """
    if not generated:
        return []
    grounded = phrase_sets(grounding, max_n) if grounding is not None else [set()] * len(generated)
    in_generated = Counter()
    for phrases, ground in zip(phrase_sets(generated, max_n), grounded):
        in_generated.update(phrases - ground)
    in_real = Counter(p for phrases in phrase_sets(real, max_n) for p in phrases)
    rows = []
    for phrase, n_texts in in_generated.items():
        if n_texts < min_count:
            continue
        ratio = (n_texts / len(generated)) / ((in_real[phrase] + 1) / (len(real) + 1))
        rows.append({"phrase": display_phrase(phrase), "key": phrase, "generated_texts": n_texts,
                     "real_texts": in_real[phrase], "ratio": round(ratio, 1), "tic": ratio >= min_ratio})
    rows.sort(key=lambda r: (-r["ratio"], -r["generated_texts"], r["phrase"]))
    flagged = [r["key"] for r in rows if r["tic"]]
    kept = [row for row in rows
            if not any(f != row["key"] and f" {f} " in f" {row['key']} " for f in flagged)]
    return kept[:top] if top else kept


def has_phrase(text: str, phrase_key: str) -> bool:
    """Does text contain the phrase (a find_tics "key"), on token boundaries?"""
    return f" {phrase_key} " in " " + " ".join(tokens(text)) + " "


def tic_in(text: str, tics: list[dict], grounding: str = "") -> str | None:
    """The first flagged tic that text contains and its grounding does not, or None."""
    for row in tics:
        if row["tic"] and has_phrase(text, row["key"]) and not has_phrase(grounding, row["key"]):
            return row["phrase"]
    return None


# ---------------------------------------------------------------- near duplicates


def question_text(record: dict) -> str:
    """Everything the user side says in a conversation."""
    return " ".join(m["content"] for m in record["messages"] if m["role"] == "user")


def normalized_words(text: str) -> frozenset:
    return frozenset(t for t in tokens(text) if is_word(t))


def remove_near_duplicates(records: list[dict], threshold: float,
                           reference: list[dict] = ()) -> tuple[list[dict], list[tuple[dict, dict]]]:
    """Keep the first of every group of records whose questions (question_text) have a
    word-set Jaccard similarity >= threshold; only conversations with the same number of
    user turns are compared (a multi-turn window is no duplicate of its first exchange).
    `reference` records (identity) come first and always stay, so a generated "What is
    your name?" paired with an essay passage is removed. Returns (kept records, without
    the reference ones, [(removed, kept_twin)]). Exact, with a prefix filter so it stays
    fast on thousands of questions."""
    n_reference = len(reference)
    records = list(reference) + list(records)
    sets = [normalized_words(question_text(r)) for r in records]
    turns = [sum(m["role"] == "user" for m in r["messages"]) for r in records]
    frequency = Counter(t for s in sets for t in s)
    index: dict[str, list[int]] = {}
    kept, removed = [], []
    for i, (record, words) in enumerate(zip(records, sets)):
        if not words:
            if i >= n_reference:
                kept.append(record)
            continue
        ordered = sorted(words, key=lambda t: (frequency[t], t))
        prefix = ordered[:len(ordered) - math.ceil(threshold * len(ordered)) + 1]
        twin = None
        for candidate in () if i < n_reference else {j for t in prefix for j in index.get((turns[i], t), ())}:
            other = sets[candidate]
            if len(words & other) / len(words | other) >= threshold:
                twin = candidate
                break
        if twin is not None:
            removed.append((record, records[twin]))
            continue
        if i >= n_reference:
            kept.append(record)
        for t in prefix:
            index.setdefault((turns[i], t), []).append(i)
    return kept, removed

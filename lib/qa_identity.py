"""Stage 04's identity source: first-person answers from params persona.profile_card to many
phrasings of "who are you", "are you Nancy Pelosi?" and "are you an AI?"
(identity_conversations), as a share of the chat data (identity_target).
"""
from __future__ import annotations

import math
import random
import re

from lib.qa_sources import conversation
from lib.text import period, sentence_case

IDENTITY_QUESTIONS = {
    "name": ["What's your name?", "What is your name?", "Who are you?",
             "Who is this?", "Can you introduce yourself?", "Introduce yourself.", "Tell me your name.",
             "What should I call you?", "Who are you, exactly?", "Hi! Who are you?", "Hello, what's your name?",
             "May I ask who you are?", "What do people call you?",
             "Sorry, who are you again?", "Hey, what's your name?", "I'm not sure who you are. Who are you?",
             "Please tell me who you are.", "Are you going to tell me your name?"],
    # asked from the user's side: a 135M chat model answered 07's "Who exactly am I talking to right
    # now?" with "I'm talking to you." in 8 of 8 samples (PROGRESS 2026-12-01 03:05)
    "talking_to": ["Who am I talking to?", "Who am I speaking with?", "Who am I chatting with?",
                   "Who's on the other end?", "Who am I talking with right now?",
                   "Who's there?", "Who is speaking, please?", "Who am I having a chat with?"],
    "made_by": ["Who made you?", "Who created you?", "Who built you?", "Who trained you?",
                "What company built you?", "Who programmed you?"],
    # 07's adversarial probe "You're Nancy Pelosi, right?" was also a phrasing here ("You're {other}, right?"):
    # the model trained on an evaluation probe (test_identity_probes_are_not_what_04_trains_on now fills the templates)
    "not_other": ["Are you {other}?", "So you're {other}?", "Is this {other}?", "Am I talking to {other}?"],
    # 07's adversarial probes (data/eval/identity_adversarial.json) are longer phrasings none of these repeat
    "not_ai": ["Are you an AI?", "Are you a bot?", "Are you a chatbot?", "Am I talking to a computer?",
               "Is this an AI?", "Are you a computer program?", "Are you a machine?", "Are you ChatGPT?",
               "Are you a robot?", "Is this a bot I'm talking to?", "Are you an assistant?",
               "Are you SmolLM?", "Are you an AI model?", "Is this an automated chat?"],
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
}


# How many of each round of identity_conversations' draw a category takes (1 when not named):
# who the model is, asked in many ways, is most of the identity data; each fact gets one turn.
# The who-is-it categories come first in IDENTITY_QUESTIONS, so a count under one round (19 for
# Paul Graham's card) cuts facts, not them. Trump's q4_k_m GGUF said "I'm Nancy Pelosi." to "You're
# Nancy Pelosi, right?" 2 of 2 times with not_other at 1 (PROGRESS 2026-12-01 04:01).
# With every category at 1, a 20-conversation cpu run had 3 name questions and an identity rate
# of 0.85 on plain probes (PROGRESS 2026-12-01 03:05). With not_other and made_by at 2 and 1, PG's
# chat model still said "Nancy Pelosi." to "You're Nancy Pelosi, right?" and "I wrote the YC blog."
# to "Which company made you?" (PROGRESS 2026-12-01 06:47).
CATEGORY_WEIGHTS = {"name": 4, "talking_to": 2, "not_other": 3, "not_ai": 2, "made_by": 2}

OTHER_PEOPLE = ["Nancy Pelosi", "Joe Biden", "Barack Obama", "Hillary Clinton", "Elon Musk", "Bill Gates",
                "Mark Zuckerberg", "Sam Altman", "Steve Jobs", "Oprah Winfrey", "Donald Trump", "Paul Graham"]


IDENTITY_PHRASINGS = frozenset(q.format(other=o).lower() for phrasings in IDENTITY_QUESTIONS.values()
                               for q in phrasings for o in OTHER_PEOPLE)


MONTH_START = re.compile(r"^(january|february|march|april|may|june|july|august|september|october|"
                         r"november|december)\b", re.I)


KNOWN_CARD_KEYS = {"name", "full_name", "born", "known_for", "work", "lives_in", "family", "party", "current_year"}


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
    answers["talking_to"] = [f"You're talking to {name}.", f"This is {name}.", f"I'm {name}."]
    answers["made_by"] = [f"Nobody made me. I'm {name}.", f"No one built me; I'm {name}, a person."]
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
    facts), drawn round-robin over the categories the card can answer, CATEGORY_WEIGHTS[c]
    pairs of category c per round, seeded."""
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
            for _ in range(CATEGORY_WEIGHTS.get(category, 1)):
                if pools[category] and len(records) < count:
                    q, a = pools[category].pop(0)
                    records.append(conversation([(q, a)], "identity", system_prompt))
    return records


def asks_identity(question: str) -> bool:
    """Whether `question` is one of IDENTITY_QUESTIONS' phrasings (templates filled with each of
    OTHER_PEOPLE), ignoring case and surrounding space."""
    return question.strip().lower() in IDENTITY_PHRASINGS


def unused_card_keys(card: dict) -> list[str]:
    """profile_card keys that no identity question uses (reported, not an error)."""
    return sorted(set(card) - KNOWN_CARD_KEYS)

"""Authorship verification: the probability that the person wrote a text, with a 95% CI.

    python -m lib.style_metrics authorship pg answer1.txt answer2.txt   # one JSON line per file

Method
- Features that follow style rather than topic: text distortion (Stamatatos 2017,
  "Authorship attribution using text distortion", EACL; variant DV-MA). Every word outside
  the KEEP_WORDS words most frequent in every group of training texts (the person's and each
  impostor group's) has each letter replaced by "*" and each digit by "#", so function words,
  punctuation, word lengths and word order survive and topic words do not. Whitespace is
  made single spaces (layout belongs to the source format, not to the person). On the
  distorted text: TF-IDF of character 2-4-grams (sublinear tf).
- A verifier, not a closed-set attributor: an L2 logistic regression (scikit-learn) of the
  person against impostors, texts by others (the general-impostors idea of Koppel & Winter
  2014, "Determining if two documents are written by the same author", JASIST): the other
  personas' training corpora and the base model's own text. Trained on windows of
  WINDOW_WORDS words of the person's 02 training documents only, never on held-out text nor
  on answers to 07's prompts.
- Uncertainty: BAGS models, each fitted on a bootstrap resample of the training windows
  (bagging). A text is cut into windows; p_person is the mean over its windows and the
  models, and the 95% CI is the percentile interval of DRAWS bootstrap draws that resample
  the windows and pick a model. For a system, the mean over its answers with a bootstrap CI
  that resamples the prompts (a prompt's answers under several seeds stay together).
- Distinguishability: the cross-validated ROC AUC of a classifier with the same features
  that separates a system's answers from the person's held-out text; 0.5 means it cannot
  tell them apart, 1.0 that it always can.

Every score lies in [0, 1]. A text under MIN_WORDS words is too short to judge.
"""
from __future__ import annotations

import random
import re
from collections import Counter
from dataclasses import dataclass, field

WINDOW_WORDS = 100   # words per training and scoring window
MIN_WORDS = 40       # shortest text that is judged (a shorter last window joins the previous one)
KEEP_WORDS = 300     # most frequent words kept verbatim by the distortion
BAGS = 15            # bagged models
DRAWS = 2000         # bootstrap draws for a CI
WORD_RE = re.compile(r"[^\W_]+(?:['’][^\W_]+)*")


class TooShortError(ValueError):
    """A text shorter than MIN_WORDS words: too short to judge."""


def alphanumeric_word_count(text: str) -> int:
    return len(WORD_RE.findall(text))


def distort(text: str, keep: frozenset[str]) -> str:
    """DV-MA text distortion: words not in `keep` (lowercase) become "*" per letter and "#"
    per digit; whitespace runs become one space."""
    def mask(match: re.Match) -> str:
        word = match.group(0)
        if word.lower() in keep:
            return word
        return re.sub(r"[^\W\d_]", "*", re.sub(r"\d", "#", word))

    return WORD_RE.sub(mask, " ".join(text.split()))


def windows(text: str, size: int = WINDOW_WORDS, min_words: int = MIN_WORDS) -> list[str]:
    """The text cut into windows of `size` whitespace-separated words; a last window under
    min_words words joins the one before. Raises TooShortError under min_words words."""
    tokens = text.split()
    counted = alphanumeric_word_count(text)
    if counted < min_words:
        raise TooShortError(f"{counted} words; the measure judges texts of at least {min_words} words")
    pieces = [tokens[i:i + size] for i in range(0, len(tokens), size)]
    if len(pieces) > 1 and alphanumeric_word_count(" ".join(pieces[-1])) < min_words:
        last = pieces.pop()
        pieces[-1] += last
    return [" ".join(piece) for piece in pieces]


def training_windows(texts: list[str]) -> list[str]:
    """Every window of every text long enough to judge."""
    out = []
    for text in texts:
        try:
            out += windows(text)
        except TooShortError:
            continue
    return out


def frequent_words(groups: list[list[str]], count: int = KEEP_WORDS) -> frozenset[str]:
    """The `count` words most frequent in *every* group of texts (ranked by their smallest
    share among the groups): function words and other topic-free words that the person and
    each impostor use alike. A word frequent for one side only ("startups" in Paul Graham's
    essays) is masked, so it cannot carry topic into the verdict."""
    shares = []
    for texts in groups:
        counts = Counter(w.lower() for text in texts for w in WORD_RE.findall(text))
        total = sum(counts.values()) or 1
        shares.append({word: n / total for word, n in counts.items()})
    common = set.intersection(*(set(share) for share in shares))
    ranked = sorted(common, key=lambda word: (-min(share[word] for share in shares), word))
    return frozenset(ranked[:count])


def char_ngram_vectorizer(max_features: int | None = None):
    """The verifier's features: TF-IDF of character 2-4-grams (sublinear tf, in at least 2
    texts), on distorted text."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    return TfidfVectorizer(analyzer="char", ngram_range=(2, 4), sublinear_tf=True, min_df=2, max_features=max_features)


def percentile_interval(values: list[float]) -> tuple[float, float]:
    ordered = sorted(values)
    return ordered[int(0.025 * (len(ordered) - 1))], ordered[int(round(0.975 * (len(ordered) - 1)))]


def grouped_bootstrap(groups: list[list[float]], draws: int = DRAWS, seed: int = 1234
                      ) -> tuple[float | None, float | None, float | None]:
    """(mean, CI low, CI high) of values grouped by prompt: the 95% CI is the 2.5-97.5
    percentile interval of `draws` bootstrap means that resample whole groups (a prompt's
    answers over all seeds stay together: they are not independent). Empty groups are
    ignored; (None, None, None) when there are no values. Used for the identity rates
    (lib/eval_identity.py) and the judge's rates (lib/eval_judge.py)."""
    groups = [g for g in groups if g]
    if not groups:
        return None, None, None
    values = [x for g in groups for x in g]
    rng = random.Random(seed)
    means = []
    for _ in range(draws):
        sample = [x for _ in groups for x in rng.choice(groups)]
        means.append(sum(sample) / len(sample))
    low, high = percentile_interval(means)
    return sum(values) / len(values), low, high


@dataclass
class AuthorshipModel:
    """Bagged verifiers of one person against impostors (see the module docstring)."""
    keep: frozenset[str]
    vectorizer: object
    models: list
    counts: dict = field(default_factory=dict)
    seed: int = 1234

    def window_probabilities(self, text: str):
        """(windows x models) array of P(person) for the text's windows. Raises TooShortError."""
        import numpy as np

        features = self.vectorizer.transform([distort(w, self.keep) for w in windows(text)])
        return np.stack([model.predict_proba(features)[:, 1] for model in self.models], axis=1)

    def score(self, text: str, draws: int = DRAWS) -> dict:
        """{"p_person", "ci_low", "ci_high", "words", "windows"} of one text (probabilities in
        [0, 1]). Raises TooShortError under MIN_WORDS words."""
        matrix = self.window_probabilities(text)
        n_windows, n_models = matrix.shape
        rng = random.Random(self.seed)
        samples = []
        for _ in range(draws):
            rows = [rng.randrange(n_windows) for _ in range(n_windows)]
            column = rng.randrange(n_models)
            samples.append(float(matrix[rows, column].mean()))
        low, high = percentile_interval(samples)
        return {"p_person": round(float(matrix.mean()), 4), "ci_low": round(low, 4), "ci_high": round(high, 4),
                "words": alphanumeric_word_count(text), "windows": n_windows}


def balanced_weights(group_sizes: dict[str, int], person: str = "person") -> dict[str, float]:
    """Per-window sample weight of each group: the person's windows weigh half the total, and
    each impostor group an equal share of the other half, whatever their sizes (so a small
    group such as the base model's text counts as much as a large corpus). Mean weight 1."""
    total = sum(group_sizes.values())
    impostor_groups = [g for g in group_sizes if g != person and group_sizes[g]]
    share = {person: 0.5, **{g: 0.5 / len(impostor_groups) for g in impostor_groups}}
    return {g: share[g] * total / n for g, n in group_sizes.items() if n}


def fit_authorship_model(person_texts: list[str], impostor_texts: dict[str, list[str]], seed: int = 1234,
                         bags: int = BAGS) -> AuthorshipModel:
    """Fit the bagged verifier on windows of the person's texts (label 1) and of each group of
    impostor texts (label 0; e.g. {"trump": [...], "base model": [...]}), weighted by
    balanced_weights. Raises ValueError when the person or the impostors have fewer than 10
    windows."""
    from sklearn.linear_model import LogisticRegression

    groups = {"person": training_windows(person_texts)}
    groups.update({f"impostor:{name}": training_windows(texts) for name, texts in impostor_texts.items()})
    negatives = [w for name, ws in groups.items() if name != "person" for w in ws]
    if len(groups["person"]) < 10 or len(negatives) < 10:
        raise ValueError(f"too little text to model a style: {len(groups['person'])} windows of the person's and "
                         f"{len(negatives)} of impostors' ({WINDOW_WORDS} words each; at least 10 of each)")
    keep = frequent_words([ws for ws in groups.values() if ws])
    weight_of = balanced_weights({name: len(ws) for name, ws in groups.items()})
    texts, labels, weights = [], [], []
    for name, ws in groups.items():
        texts += [distort(w, keep) for w in ws]
        labels += [int(name == "person")] * len(ws)
        weights += [weight_of.get(name, 0.0)] * len(ws)
    vectorizer = char_ngram_vectorizer(max_features=50000)
    features = vectorizer.fit_transform(texts)
    rng = random.Random(seed)
    models = []
    for _ in range(bags):
        rows = [rng.randrange(len(labels)) for _ in range(len(labels))]
        while len({labels[i] for i in rows}) < 2:
            rows = [rng.randrange(len(labels)) for _ in range(len(labels))]
        model = LogisticRegression(C=10.0, max_iter=2000)
        models.append(model.fit(features[rows], [labels[i] for i in rows], sample_weight=[weights[i] for i in rows]))
    return AuthorshipModel(keep=keep, vectorizer=vectorizer, models=models, seed=seed,
                           counts={name.replace("impostor:", "") + "_windows": len(ws) for name, ws in groups.items()})


def system_authorship(model: AuthorshipModel, answers: list[str], prompts: list | None = None,
                      draws: int = DRAWS) -> dict:
    """A system's mean P(person) over its answers that are long enough to judge, with a
    bootstrap 95% CI: {"p_person", "ci_low", "ci_high", "n" (answers judged), "too_short",
    "pooled"}; p_person None when no answer can be judged. prompts: the prompt id of each
    answer; the bootstrap resamples prompts, keeping a prompt's answers (several seeds)
    together, since they are not independent (default: every answer its own prompt).

    A prompt none of whose answers is long enough alone is judged once on its answers joined
    ("pooled" counts the answers judged that way): a person who answers in two sentences (Trump's
    median real answer is 23 words, MIN_WORDS is 40) is then still judged, on all the system
    wrote for that question."""
    prompts = list(range(len(answers))) if prompts is None else list(prompts)
    if len(prompts) != len(answers):
        raise ValueError(f"{len(answers)} answers but {len(prompts)} prompt ids")
    by_prompt: dict = {}
    short: dict = {}
    for prompt, answer in zip(prompts, answers):
        try:
            score = float(model.window_probabilities(answer).mean())
        except TooShortError:
            short.setdefault(prompt, []).append(answer)
            continue
        by_prompt.setdefault(prompt, []).append(score)  # a prompt none of whose answers is judged has no group
    judged = sum(len(group) for group in by_prompt.values())
    pooled = 0
    for prompt, texts in short.items():
        if prompt in by_prompt or len(texts) < 2:
            continue
        try:
            by_prompt[prompt] = [float(model.window_probabilities("\n\n".join(texts)).mean())]
        except TooShortError:
            continue
        pooled += len(texts)
    too_short = len(answers) - judged - pooled
    if not by_prompt:
        return {"p_person": None, "ci_low": None, "ci_high": None, "n": 0, "too_short": too_short, "pooled": 0}
    mean, low, high = grouped_bootstrap(list(by_prompt.values()), draws, model.seed)
    return {"p_person": round(mean, 4), "ci_low": round(low, 4), "ci_high": round(high, 4),
            "n": judged + pooled, "too_short": too_short, "pooled": pooled}


def distinguishability(system_texts: list[str], person_texts: list[str], keep: frozenset[str],
                       seed: int = 1234) -> float | None:
    """Cross-validated ROC AUC (stratified, up to 5 folds) of a classifier with the verifier's
    features separating a system's texts from the person's held-out windows: 0.5 = cannot
    tell them apart, 1.0 = always can. None with fewer than 4 judgeable texts on a side."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline

    system = [t for t in system_texts if alphanumeric_word_count(t) >= MIN_WORDS]
    person = training_windows(person_texts)
    folds = min(5, len(system), len(person))
    if folds < 4:
        return None
    texts = [distort(t, keep) for t in system + person]
    labels = [0] * len(system) + [1] * len(person)
    pipeline = make_pipeline(char_ngram_vectorizer(), LogisticRegression(C=10.0, class_weight="balanced", max_iter=2000))
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return round(float(cross_val_score(pipeline, texts, labels, cv=cv, scoring="roc_auc").mean()), 4)

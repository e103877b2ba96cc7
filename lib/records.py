"""The records that cross a stage boundary, as typed dicts (they are read and written as JSON
lines, so they stay plain dicts at run time; these types say what a stage may rely on).

    01 -> 02, 04, 07   Document        runs/<p>/01_scrape/documents.jsonl
    04 -> 05           Conversation    runs/<p>/04_qa/conversations.jsonl
    03, 05 -> 06, 07   TrainingSummary runs/<p>/0N_*/train_summary.json (lib.train)
    06 -> 07           GateResult      runs/<p>/06_quantize/gate.json (lib.quant_gate)
"""
from __future__ import annotations

from typing import Literal, NotRequired, TypedDict


class Turn(TypedDict):
    """One speaker's turn in an interview; is_persona when the label matched persona.speaker_regex."""
    speaker: str
    text: str
    is_persona: bool


class Document(TypedDict):
    """One piece of the person's writing or one interview. An essay has text (and notes, kept
    apart); an interview has turns, and the speakers and warnings its parse reported
    (lib.speaker_labels.speaker_table, speaker_warnings)."""
    id: str
    kind: Literal["essay", "interview"]
    title: str
    date: str | None
    year: int | None
    month: int | None
    source: str
    text: NotRequired[str]
    notes: NotRequired[str]
    file: NotRequired[str]
    turns: NotRequired[list[Turn]]
    speakers: NotRequired[list[dict]]
    warnings: NotRequired[list[str]]


class Message(TypedDict):
    role: Literal["system", "user", "assistant"]
    content: str


class Conversation(TypedDict):
    """One chat example: an optional system message, then user/assistant turns; source is one
    of lib.qa_sources.SOURCES, doc_id the document its answer comes from (None for identity)."""
    messages: list[Message]
    source: str
    doc_id: str | None


class TrainingSummary(TypedDict, total=False):
    """What lib.train.run_training reports (train_summary.json). finished is False when the
    time budget stopped the run (rerun to continue); tokens_per_s counts trained tokens per
    second of training wall time; nonpad_share is the share of batch positions that are not
    padding; data describes the examples (counts, loss_share)."""
    kind: Literal["completion", "chat"]
    backend: str
    base: str
    finished: bool
    dtype: str
    batching: str
    stopped_by_time_budget: bool
    steps: int
    max_steps: int
    resumed_from_step: int
    world_size: int
    final_loss: float | None
    first_loss: float | None
    train_tokens_this_run: int
    train_wall_s: float
    tokens_per_s: float
    nonpad_share: float
    trainable_params: int
    data: dict
    peak_gpu_memory_gb: float | None
    run_config_digest: str


class GateResult(TypedDict):
    """06's verdict: passed when problems is empty; results per GGUF name ("f16", "q8_0",
    ...) with ppl, kld, kld_p99, top1, size_mb, chat replies and, for f16, the format checks."""
    passed: bool
    problems: list[str]
    results: dict[str, dict]

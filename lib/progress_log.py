"""PROGRESS.md: one entry per evaluated run, in the shape of the original project's log.

The original hand-written log (docs/progress.md of the project this one grows from) kept,
per model: **Model**, **Data**, **Train Setup**, **Final loss**, sample conversations and a
**Conclusion**. Stage 07 appends the same, plus the measures against the baseline; the
conclusion is left for a person to write. Earlier entries are never rewritten: the file is
only appended to, and an entry already there (same run, same numbers) is not added twice.
"""
from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path

from lib.runfiles import format_number, json_digest

ENTRY_MARKER = "<!-- progress-entry: {key} -->"
CONCLUSION_PLACEHOLDER = "_(for a person to write, after reading {report})_"
NEW_LOG_HEADER = "# Progress\n\nOne entry per evaluated run, appended by stage 07 (lib/progress_log.py).\n"


def entry_key(*parts) -> str:
    """A short hash identifying a run's entry (from its params and measures)."""
    return json_digest(parts, 16)


def train_setup(section: dict, stage_metrics: dict | None = None) -> str:
    """'steps = 120, batch_size = 4, ...' from a train_completion / train_chat params section,
    with the backend, dtype and batching the stage's metrics.json reports (what
    model.backend=auto, model.dtype=auto and the hardware made of them)."""
    keys = ("max_steps", "num_epochs", "batch_size", "grad_accum", "learning_rate", "lora_r", "lora_alpha", "warmup_steps")
    shown = {k: section[k] for k in keys if k in section}
    shown.update({k: (stage_metrics or {})[k] for k in ("backend", "dtype", "batching") if (stage_metrics or {}).get(k)})
    if shown.get("max_steps"):
        shown.pop("num_epochs", None)
    return ", ".join(f"{k} = {format_number(v, 4, missing='n/a', trim_zeros=True)}" for k, v in shown.items())


def conversation_block(samples: list[dict], persona_name: str) -> str:
    """Fenced sample conversations: [{"question", "system", "answer"}] -> 'User: ...\\nName (system): ...'."""
    blocks = []
    for sample in samples:
        answer = " ".join(sample["answer"].split())
        blocks.append(f"```\nUser: {sample['question']}\n{persona_name} ({sample['system']}): {answer}\n```")
    return "\n\n".join(blocks)


def progress_entry(*, title: str, key: str, model: str, data: str, train: dict[str, str], final_loss: dict,
                   measures_table: str, samples: list[dict], persona_name: str, report_path: str) -> str:
    """One entry in the original log's shape. train: {"completion": setup, "chat": setup};
    final_loss: {"completion": x, "chat": y}; measures_table: a markdown table of the key
    measures per system; samples: sample conversations."""
    setup = "; ".join(f"{name}: {text}" for name, text in train.items())
    losses = ", ".join(f"{name} {format_number(value, missing='n/a', trim_zeros=True)}" for name, value in final_loss.items())
    return "\n".join([
        f"### {title}",
        ENTRY_MARKER.format(key=key),
        "",
        f"**Model**: {model} <br>",
        f"**Data**: {data} <br>",
        f"**Train Setup**: {setup} <br>",
        f"**Final loss**: {losses} <br>",
        "",
        "**Measures against the baseline**:",
        "",
        measures_table,
        "",
        "**Samples**:",
        "",
        conversation_block(samples, persona_name),
        "",
        "**Conclusion** <br>",
        CONCLUSION_PLACEHOLDER.format(report=report_path),
        "",
    ])


def append_entry(path: Path, entry: str, key: str) -> bool:
    """Append entry to the log at path (created with a short header if missing). Returns False,
    changing nothing, when an entry with this key is already there (a rerun of the same run)."""
    path = Path(path)
    existing = path.read_text(encoding="utf-8") if path.is_file() else ""
    if ENTRY_MARKER.format(key=key) in existing:
        return False
    text = ("" if existing else NEW_LOG_HEADER) + ("\n" if existing and not existing.endswith("\n") else "")
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(text + "\n" + entry)
        handle.flush()
        os.fsync(handle.fileno())
    return True


def run_title(persona_name: str, profile: str, when: datetime | None = None) -> str:
    """'Paul Graham: cpu run, 2026-11-27 14:05 UTC'"""
    when = when or datetime.now(timezone.utc)
    return f"{persona_name}: {profile} run, {when:%Y-%m-%d %H:%M} UTC"


def chain_entry(persona: str, params: dict, stage_metrics: dict[str, dict], document_counts: dict[str, int],
                scores: dict, authorship: dict, measures_table: str, samples: list[dict]) -> tuple[str, str]:
    """(key, entry) for one run of the chain, as 07 writes it: the model and GGUF levels from
    params, the data from each stage's metrics.json (stage_metrics: stage name -> metrics)
    and document_counts {"all", "trained", "heldout"}, the train setups and final losses of
    03 and 05, and the measures. The key changes with the params and the measures."""
    qa = stage_metrics["04_qa"]
    split = stage_metrics["02_split"]
    sources = ", ".join(f"{source} {count}" for source, count in (qa.get("by_source") or {}).items())
    model = (f"{params['model']['base']} + LoRA r={params['train_completion']['lora_r']} completion (03) "
             f"+ LoRA r={params['train_chat']['lora_r']} chat (05); GGUF " + ", ".join(params["evaluate"]["gguf_levels"]))
    data = (f"{document_counts['all']} documents ({document_counts['trained']} trained on, "
            f"{document_counts['heldout']} held out); {split['train_chunks']} chunks of at most {split['max_tokens']} "
            f"tokens; {qa.get('conversations')} conversations from 04 ({sources})")
    key = entry_key(persona, params, scores, authorship)
    entry = progress_entry(
        title=run_title(params["persona"]["name"], params["run"]["profile"]), key=key, model=model, data=data,
        train={"completion": train_setup(params["train_completion"], stage_metrics["03_completion"]),
               "chat": train_setup(params["train_chat"], stage_metrics["05_chat"])},
        final_loss={"completion": stage_metrics["03_completion"].get("final_train_loss"),
                    "chat": stage_metrics["05_chat"].get("final_train_loss")},
        measures_table=measures_table, samples=samples, persona_name=params["persona"]["name"],
        report_path=f"runs/{persona}/07_evaluate/report.md")
    return key, entry

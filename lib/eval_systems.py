"""07's systems: the base model prompted to be the persona (the original project's baseline),
the completion-tuned model (03), the chat-tuned model (03 + 05), and the chat model's GGUF
quants from 06 run by llama.cpp (find_systems).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

BASELINE = "base_prompted"
NOT_A_QUANT = ("adapter", "lora", "imatrix")  # other .gguf files 06 may write


@dataclass
class System:
    """One model under evaluation: transformers (a base + LoRA adapters), or a GGUF file (whose
    base and adapters then only say where its transformers tokenizer lives). base: a model
    folder used instead of params model.base (05's completion-merged base for the chat model)."""
    name: str
    adapters: list[Path] = field(default_factory=list)
    gguf: Path | None = None
    base: str | None = None
    writes_from_headers: bool = False  # the completion model: titles come as document headers
    max_seeds: int | None = None  # answer with the first max_seeds of evaluate.seeds only (None: all)

    def seeds(self, seeds: list[int]) -> list[int]:
        return list(seeds[:self.max_seeds] if self.max_seeds else seeds)

    def base_model(self, params_base: str) -> str:
        return self.base or params_base

    def fingerprint(self, params_base: str) -> str:
        """Changes when the model files change (size and modification time of each)."""
        if self.gguf:
            files = [self.gguf]
        else:
            files = [a / name for a in self.adapters for name in ("adapter_model.safetensors", "adapter_model.bin")]
            files += sorted(Path(self.base).glob("*.safetensors")) if self.base else []
        stamp = [(str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files if f.is_file()]
        return json.dumps({"name": self.name, "base": None if self.gguf else self.base_model(params_base),
                           "files": stamp})


def find_quant(quant_dir: Path, level: str) -> Path:
    """The GGUF of one quant level in 06's folder (e.g. ...-q4_k_m.gguf), never the adapter or
    imatrix files."""
    found = [p for p in sorted(Path(quant_dir).glob("*.gguf"))
             if re.search(rf"(^|[-_.]){re.escape(level)}$", p.stem, re.I)
             and not any(word in p.stem.lower() for word in NOT_A_QUANT)]
    if len(found) != 1:
        listing = ", ".join(p.name for p in sorted(Path(quant_dir).glob("*.gguf"))) or "no .gguf files"
        raise FileNotFoundError(f"{quant_dir}: expected one {level} GGUF (evaluate.gguf_levels), found "
                                f"{len(found)} (the folder has: {listing})")
    return found[0]


def find_systems(completion_dir: Path, chat_dir: Path, quant_dir: Path, gguf_levels: list[str],
                 completion: bool = True) -> list[System]:
    """The systems of a finished chain, from the folders of 03, 05 and 06. The chat model is
    05's base/ (the base with 03's adapter merged in 16 bit) + 05's adapter/, as 05 trained it.
    The completion model answers with the first seed only, and not at all with completion=False
    (evaluate.completion_system)."""
    completion_adapter, chat, chat_base = Path(completion_dir) / "adapter", Path(chat_dir) / "adapter", Path(chat_dir) / "base"
    for adapter in (completion_adapter, chat):
        if not (adapter / "adapter_config.json").is_file():
            raise FileNotFoundError(f"{adapter}: no LoRA adapter (adapter_config.json); run its stage first")
    if not (chat_base / "config.json").is_file():
        raise FileNotFoundError(f"{chat_base}: no merged completion model (config.json); run 05_chat first")
    chat_system = {"adapters": [chat], "base": str(chat_base)}
    # the completion model is a step on the way, not what users run: one seed (its 200-token answers
    # took 190 of 07's 480 s of answers on the cpu profile with two)
    systems = [System(BASELINE)]
    if completion:
        systems.append(System("completion", [completion_adapter], writes_from_headers=True, max_seeds=1))
    systems.append(System("chat", **chat_system))
    systems += [System(f"gguf_{level}", gguf=find_quant(quant_dir, level), **chat_system) for level in gguf_levels]
    return systems

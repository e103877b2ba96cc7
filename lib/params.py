"""Load, merge and validate the parameters of a run.

Merge order: params/defaults.yaml < params/<persona>.yaml < params/profiles.yaml[<profile>]
< overrides ("section.key=value" strings). Every key must exist in defaults.yaml and keep
its type; a bad file, key or value raises ParamsError naming the file and the key, before
any work is done. An empty persona.system_prompt becomes "You are <persona.name>.".

Overrides come as a list (one per item: the --set arguments) or as one string split by
shell rules (make's SET, the notebooks' `overrides`), so a value with spaces is quoted:
    SET="persona.system_prompt='You are PG' train_chat.learning_rate=1e-4"

    python -m lib.params pg --profile cpu            # print the resolved params
    python -m lib.params pg --set split.max_tokens=256
    python -m lib.params --set-args "$SET"           # SET as shell-quoted --set arguments (Makefile)
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import re
import shlex
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
PARAMS_DIR = ROOT / "params"  # defaults.yaml, profiles.yaml and the personas' files


def persona_params_dir() -> Path:
    """Where params/<persona>.yaml files are looked up: $PERSONA_PARAMS_DIR when set (a
    folder of your own personas, or a test's), else PARAMS_DIR."""
    return Path(os.environ.get("PERSONA_PARAMS_DIR") or PARAMS_DIR)
PROFILES = ("cpu", "t4", "gpu", "smoke")

CHOICES = {
    "persona.kind": ("essays", "interviews", "folder"),
    "split.heldout_rule": ("newest", "random"),
    "model.dtype": ("auto", "float32", "float16", "bfloat16"),
    "model.chat_template": ("own", "chatml"),
    "model.backend": ("auto", "unsloth", "hf"),
}
QA_SOURCES = ("backtranslation", "interviews", "own_questions", "identity", "llm_answers")
QUANT_LEVELS = ("q8_0", "q4_k_m", "q4_k_s", "q4_0", "q5_k_m", "q5_k_s", "q6_k", "q3_k_m", "q2_k")
SECRET_KEY_PATTERN = re.compile(r"(token|secret|password|api_key)$", re.I)
SECRET_VALUE_PATTERN = re.compile(r"^(hf_[A-Za-z0-9]{20,}|sk-[A-Za-z0-9_-]{20,}|gsk_[A-Za-z0-9]{20,})$")


class ParamsError(ValueError):
    """A parameter file, key or value is wrong. The message names the file and the key."""


def read_yaml(path: Path) -> dict:
    """Read a YAML mapping; a missing file, a syntax error or a non-mapping is a ParamsError."""
    if not path.is_file():
        raise ParamsError(f"{path}: file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ParamsError(f"{path}: not valid YAML: {err}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ParamsError(f"{path}: expected a mapping of sections, got {type(data).__name__}")
    return data


def type_name(value) -> str:
    return "null" if value is None else type(value).__name__


def check_type(key: str, value, default, source: str) -> None:
    """Raise ParamsError unless value has the type of its default (int is accepted for float)."""
    if default is None:
        if value is not None and not isinstance(value, str):
            raise ParamsError(f"{source}: {key} must be a string or null, got {type_name(value)} {value!r}")
        return
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, dict):
        ok = isinstance(value, dict) and all(isinstance(k, str) for k in value)
        if ok:
            for k, v in value.items():
                if not isinstance(v, (str, int, float)):
                    raise ParamsError(f"{source}: {key}.{k} must be a plain value, got {type_name(v)}")
    else:
        ok = isinstance(value, type(default))
    if not ok:
        raise ParamsError(
            f"{source}: {key} must be {type_name(default)}, got {type_name(value)} {value!r}")


def as_float(value):
    """An int, or a string Python reads as a float ("1e-4", which YAML 1.1 leaves a
    string), as a float; anything else unchanged (check_type then names it)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    return value


def merge_layer(params: dict, layer: dict, defaults: dict, source: str) -> None:
    """Merge one layer (section -> key -> value) into params, checking keys and types."""
    for section, values in layer.items():
        if section not in defaults:
            raise ParamsError(f"{source}: unknown section '{section}' (known: {', '.join(defaults)})")
        if not isinstance(values, dict):
            raise ParamsError(f"{source}: section '{section}' must be a mapping, got {type_name(values)}")
        for key, value in values.items():
            if key not in defaults[section]:
                raise ParamsError(f"{source}: unknown key '{section}.{key}'")
            default = defaults[section][key]
            if isinstance(default, float):
                value = as_float(value)
            check_type(f"{section}.{key}", value, default, source)
            params[section][key] = value


def parse_override(text: str, defaults: dict | None = None) -> dict:
    """'section.key=value' -> {section: {key: value}}, the value read as YAML (so 5 is an
    int, [a, b] a list). For a key whose default (in defaults) is a string, a value YAML
    does not read as a string is taken as written: "You are PG: an essayist" (a mapping
    to YAML), "#1" (a comment), "123"."""
    if "=" not in text or "." not in text.split("=", 1)[0]:
        raise ParamsError(f"override '{text}': expected section.key=value")
    dotted, raw = text.split("=", 1)
    section, key = dotted.strip().split(".", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    section_defaults = (defaults or {}).get(section)
    if isinstance(section_defaults, dict) and isinstance(section_defaults.get(key), str) and not isinstance(value, str):
        value = raw
    return {section: {key: value}}


def split_overrides(overrides) -> list[str]:
    """Overrides as a list of "section.key=value" strings. A list holds one per item, kept
    as it is (spaces included: the --set arguments); one string (make's SET, a notebook's
    `overrides`) is split by shell rules, so a value with spaces is quoted:
    "persona.system_prompt='You are PG' train_chat.num_epochs=2". shlex.join(list) gives
    the string that splits back into list."""
    if not overrides:
        return []
    if isinstance(overrides, str):
        try:
            return shlex.split(overrides)
        except ValueError as err:
            raise ParamsError(f"SET / overrides {overrides!r}: {err} (quote a value with spaces as a whole: "
                              "persona.system_prompt='You are ...')") from None
    return list(overrides)


def default_system_prompt(name: str) -> str:
    """The system prompt of a persona whose persona.system_prompt is empty."""
    return f"You are {name.strip()}."


def read_questions(path: Path) -> list[str]:
    """The questions of an evaluation file {"questions": ["...", ...]}."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: questions file not found")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON: {err}") from None
    questions = data.get("questions") if isinstance(data, dict) else None
    if not isinstance(questions, list) or not questions or not all(isinstance(q, str) and q.strip() for q in questions):
        raise ValueError(f'{path}: expected {{"questions": ["...", ...]}} with at least one non-empty question')
    return [q.strip() for q in questions]


def source_folder(params: dict) -> Path:
    """scrape.folder as a path: "~" expanded, relative to the repository root."""
    return ROOT / Path(params["scrape"]["folder"]).expanduser()


def detect_profile() -> str:
    """auto: t4 on a CUDA GPU under 20 GB (Colab/Kaggle T4), gpu on a bigger one, else cpu."""
    try:
        import torch
    except ImportError:
        return "cpu"
    if not torch.cuda.is_available():
        return "cpu"
    total = torch.cuda.get_device_properties(0).total_memory
    return "t4" if total < 20 * 2**30 else "gpu"


def check_values(params: dict, persona_file: Path) -> None:
    """Checks beyond types: choices, ranges, files that must exist, no secrets in files."""
    def fail(key, problem):
        raise ParamsError(f"{persona_file}: {key} {problem}")

    for dotted, choices in CHOICES.items():
        section, key = dotted.split(".")
        if params[section][key] not in choices:
            fail(dotted, f"must be one of {', '.join(choices)}, got {params[section][key]!r}")
    if not params["persona"]["name"].strip():
        fail("persona.name", "must be set")
    kind, regex = params["persona"]["kind"], params["persona"]["speaker_regex"]
    if kind == "interviews" and not regex:
        fail("persona.speaker_regex", "must be set for an interviews persona")
    if regex:
        try:
            re.compile(regex)
        except re.error as err:
            fail("persona.speaker_regex", f"is not a valid regex: {err}")
    if kind == "essays" and not params["scrape"]["base_url"]:
        fail("scrape.base_url", "must be set for an essays persona")
    if kind == "folder":
        if not params["scrape"]["folder"]:
            fail("scrape.folder", "must be set for a folder persona (the folder of the person's files)")
        if not source_folder(params).is_dir():
            fail("scrape.folder", f"is not a folder: {source_folder(params)}")
    if "identity" in params["qa"]["sources"] and not params["persona"]["profile_card"]:
        fail("persona.profile_card", "is empty; qa.sources has identity, which answers from it")
    snapshot = params["scrape"]["snapshot_dir"]
    if snapshot and not (ROOT / snapshot).is_dir():
        fail("scrape.snapshot_dir", f"is not a folder: {snapshot}")
    questions = params["evaluate"]["questions_file"]
    if questions and not (ROOT / questions).is_file():
        fail("evaluate.questions_file", f"file not found: {questions}")
    for section in ("split",):
        if params[section]["max_tokens"] < 64:
            fail("split.max_tokens", f"must be at least 64, got {params[section]['max_tokens']}")
        if not 0 <= params[section]["overlap_tokens"] < params[section]["max_tokens"] // 2:
            fail("split.overlap_tokens", "must be >= 0 and under half of split.max_tokens")
        if params[section]["heldout_count"] < 1:
            fail("split.heldout_count", "must be at least 1")
    for section in ("train_completion", "train_chat"):
        p = params[section]
        for key in ("lora_r", "batch_size", "grad_accum", "save_steps", "logging_steps", "num_gpus"):
            if p[key] < 1:
                fail(f"{section}.{key}", f"must be at least 1, got {p[key]}")
        if p["max_steps"] < 0 or (p["max_steps"] == 0 and p["num_epochs"] <= 0):
            fail(f"{section}.max_steps", "must be > 0, or 0 with num_epochs > 0")
        if not 0 < p["learning_rate"] < 1:
            fail(f"{section}.learning_rate", f"must be in (0, 1), got {p['learning_rate']}")
        if not 0 <= p["lora_dropout"] < 1:
            fail(f"{section}.lora_dropout", "must be in [0, 1)")
    for source in params["qa"]["sources"]:
        if source not in QA_SOURCES:
            fail("qa.sources", f"has unknown source {source!r} (known: {', '.join(QA_SOURCES)})")
    if params["qa"]["concurrency"] < 1:
        fail("qa.concurrency", "must be at least 1")
    env_name = params["qa"]["api_key_env"]
    if env_name is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", env_name):
        fail("qa.api_key_env", "must be the NAME of an environment variable, not a key")
    env_name = params["evaluate"]["judge_api_key_env"]
    if env_name is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", env_name):
        fail("evaluate.judge_api_key_env", "must be the NAME of an environment variable, not a key")
    for key in ("judge_max_tokens", "judge_concurrency"):
        if params["evaluate"][key] < 1:
            fail(f"evaluate.{key}", f"must be at least 1, got {params['evaluate'][key]}")
    for level in params["quantize"]["levels"]:
        if level not in QUANT_LEVELS:
            fail("quantize.levels", f"has unknown level {level!r} (known: {', '.join(QUANT_LEVELS)})")
    quantize = params["quantize"]
    if quantize["modelfile_quant"] not in [*quantize["levels"], "f16"]:
        fail("quantize.modelfile_quant", f"must be f16 or one of quantize.levels {quantize['levels']}, "
             f"got {quantize['modelfile_quant']!r}")
    prompts = params["quantize"]["sample_prompts"]
    if not prompts or not all(isinstance(p, str) and p.strip() for p in prompts):
        fail("quantize.sample_prompts", "must be a list of one or more non-empty questions")
    if params["quantize"]["sample_seeds"] < 1:
        fail("quantize.sample_seeds", "must be at least 1")
    if not 0 <= params["quantize"]["max_degenerate_excess"] < 1:
        fail("quantize.max_degenerate_excess", "must be in [0, 1)")
    for level in params["hub"]["gguf_levels"]:
        if level.removesuffix("-imatrix") not in ("f16", *QUANT_LEVELS) or level == "f16-imatrix":
            fail("hub.gguf_levels", f"has unknown level {level!r} (f16, {', '.join(QUANT_LEVELS)}, or <level>-imatrix)")
    for section, values in params.items():
        for key, value in values.items():
            if isinstance(value, str) and SECRET_VALUE_PATTERN.match(value):
                fail(f"{section}.{key}", "looks like a secret; secrets come from the environment only")


def load_params(persona: str, profile: str = "auto", overrides=None, params_dir: Path | None = None) -> dict:
    """Resolve the params of a run: defaults < persona < profile < overrides (a list, or
    one string split by shell rules: split_overrides), validated; an empty
    persona.system_prompt becomes default_system_prompt(persona.name).

    Returns {section: {key: value}} plus "run": {persona, profile}. Raises ParamsError with
    one message naming the file and key on any problem.
    """
    explicit_dir = params_dir is not None
    params_dir = Path(params_dir or PARAMS_DIR)
    defaults_file = params_dir / "defaults.yaml"
    defaults = read_yaml(defaults_file)
    if not re.fullmatch(r"[a-z0-9_]+", persona or ""):
        raise ParamsError(f"persona '{persona}': use the name of a file params/<persona>.yaml")
    persona_file = (params_dir if explicit_dir else persona_params_dir()) / f"{persona}.yaml"
    if not persona_file.is_file():
        raise ParamsError(f"{persona_file}: no such persona file (make one for your own person with "
                          f"`make persona NAME={persona} FOLDER=...`)")
    profiles_file = params_dir / "profiles.yaml"
    profiles = read_yaml(profiles_file)
    if profile == "auto":
        profile = detect_profile()
    if profile not in profiles:
        raise ParamsError(f"{profiles_file}: unknown profile '{profile}' (known: auto, {', '.join(profiles)})")

    params = copy.deepcopy(defaults)
    merge_layer(params, read_yaml(persona_file), defaults, str(persona_file))
    merge_layer(params, profiles[profile] or {}, defaults, f"{profiles_file} [{profile}]")
    for text in split_overrides(overrides):
        merge_layer(params, parse_override(text, defaults), defaults, f"override '{text}'")
    check_values(params, persona_file)
    if not params["persona"]["system_prompt"].strip():
        # without a system message the chat template may insert its own (SmolLM2: "You are
        # a helpful AI assistant named SmolLM ..."), and the persona would be trained under it
        params["persona"]["system_prompt"] = default_system_prompt(params["persona"]["name"])
    params["run"] = {"persona": persona, "profile": profile}
    return params


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Print the resolved params of a persona.")
    parser.add_argument("persona", nargs="?")
    parser.add_argument("--profile", default=os.environ.get("PROFILE", "auto"))
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        help="section.key=value (repeatable; one override each)")
    parser.add_argument("--set-args", metavar="SET",
                        help="print the overrides of SET (one string, shell rules) as shell-quoted --set "
                             "arguments, one per override, and exit (the Makefile's recipes use it)")
    args = parser.parse_args(argv)
    if args.set_args is not None:
        try:
            print(shlex.join(arg for text in split_overrides(args.set_args) for arg in ("--set", text)))
        except ParamsError as err:
            print(f"params error: {err}", file=sys.stderr)
            return 2
        return 0
    if not args.persona:
        parser.error("the persona is required")
    try:
        params = load_params(args.persona, args.profile, args.overrides)
    except ParamsError as err:
        print(f"params error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(params, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

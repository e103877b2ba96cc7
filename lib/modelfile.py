"""An Ollama Modelfile for an exported GGUF: the training chat template as an Ollama (Go)
template, its stop tokens, the persona's system prompt and sampling parameters.

Ollama does not run the Jinja template embedded in the GGUF; it needs its own. The template
is derived from the training tokenizer by rendering a conversation with marker texts and
cutting it into per-role prefixes and a turn suffix; the pieces are checked to rebuild the
training template's output exactly (render_with_pieces) before a Modelfile is written, so a
template that this scheme cannot express is an error rather than a silently wrong model.
"""
from __future__ import annotations

from pathlib import Path

from lib.bos import uses_bos

MARKERS = {"system": "SYSTEM_Zq1", "user": "USER_Zq2", "assistant": "ASSISTANT_Zq3",
           "user2": "USER_Zq4", "assistant2": "ASSISTANT_Zq5"}


class ModelfileError(ValueError):
    """The chat template or a value cannot be written as an Ollama Modelfile."""


def template_pieces(tokenizer) -> dict:
    """Cut the tokenizer's chat template into {"system_prefix", "user_prefix",
    "assistant_prefix", "suffix", "generation_prompt", "default_system"} by rendering
    marker conversations. Raises ModelfileError when the pieces do not rebuild the template."""
    if not tokenizer.chat_template:
        raise ModelfileError(f"{tokenizer.name_or_path}: the tokenizer has no chat template")
    m = MARKERS
    full = tokenizer.apply_chat_template(
        [{"role": "system", "content": m["system"]}, {"role": "user", "content": m["user"]},
         {"role": "assistant", "content": m["assistant"]}, {"role": "user", "content": m["user2"]},
         {"role": "assistant", "content": m["assistant2"]}], tokenize=False)
    at = {key: full.index(value) for key, value in m.items()}
    end = {key: at[key] + len(value) for key, value in m.items()}
    suffix = full[end["assistant2"]:]
    between_au = full[end["assistant"]:at["user2"]]
    between_ua = full[end["user"]:at["assistant"]]
    between_su = full[end["system"]:at["user"]]
    if not suffix or not between_au.startswith(suffix) or not between_ua.startswith(suffix) \
            or not between_su.startswith(suffix):
        raise ModelfileError("the chat template does not close every turn with the same suffix; "
                             "write the Modelfile TEMPLATE by hand")
    system_prefix = full[:at["system"]]
    if uses_bos(tokenizer) and tokenizer.bos_token and system_prefix.startswith(tokenizer.bos_token):
        system_prefix = system_prefix[len(tokenizer.bos_token):]  # the runtime adds BOS itself: never twice
    prompt = tokenizer.apply_chat_template(
        [{"role": "system", "content": m["system"]}, {"role": "user", "content": m["user"]}],
        tokenize=False, add_generation_prompt=True)
    pieces = {
        "system_prefix": system_prefix,
        "user_prefix": between_au[len(suffix):],
        "assistant_prefix": between_ua[len(suffix):],
        "suffix": suffix,
        "generation_prompt": prompt[prompt.index(m["user"]) + len(m["user"]) + len(suffix):],
        "default_system": None,
    }
    no_system = tokenizer.apply_chat_template([{"role": "user", "content": m["user"]}], tokenize=False)
    head = no_system[:no_system.index(m["user"])]
    if uses_bos(tokenizer) and tokenizer.bos_token and head.startswith(tokenizer.bos_token):
        head = head[len(tokenizer.bos_token):]
    if head != pieces["user_prefix"]:
        expected_end = pieces["suffix"] + pieces["user_prefix"]
        if not (head.startswith(pieces["system_prefix"]) and head.endswith(expected_end)):
            raise ModelfileError("the chat template adds text before a conversation without a system "
                                 "message that is not a system turn; write the Modelfile TEMPLATE by hand")
        pieces["default_system"] = head[len(pieces["system_prefix"]):len(head) - len(expected_end)]
    for name, value in pieces.items():
        if value and "{{" in value:
            raise ModelfileError(f"the chat template's {name} contains '{{{{', which Ollama templates cannot hold")
    return pieces


def render_with_pieces(pieces: dict, messages: list[dict], add_generation_prompt: bool = True,
                       bos_token: str = "") -> str:
    """Python twin of ollama_template(): the prompt Ollama builds from the pieces (system
    messages merged into one system turn; the default system turn when there is none)."""
    system = "\n\n".join(msg["content"] for msg in messages if msg["role"] == "system")  # as Ollama collates
    text = bos_token
    if system:
        text += pieces["system_prefix"] + system + pieces["suffix"]
    elif pieces["default_system"] is not None:
        text += pieces["system_prefix"] + pieces["default_system"] + pieces["suffix"]
    turns = [msg for msg in messages if msg["role"] != "system"]
    for i, msg in enumerate(turns):
        last = i == len(turns) - 1
        if msg["role"] == "user":
            text += pieces["user_prefix"] + msg["content"] + pieces["suffix"]
        elif msg["role"] == "assistant":
            text += pieces["assistant_prefix"] + msg["content"] + ("" if last else pieces["suffix"])
    if add_generation_prompt and turns and turns[-1]["role"] != "assistant":
        text += pieces["generation_prompt"]
    return text


def ollama_template(pieces: dict) -> str:
    """The Go template for Ollama's TEMPLATE, on one logical line so that no whitespace
    trimming touches the pieces' own newlines."""
    system_block = "{{ if .System }}" + pieces["system_prefix"] + "{{ .System }}" + pieces["suffix"]
    if pieces["default_system"] is not None:
        system_block += "{{ else }}" + pieces["system_prefix"] + pieces["default_system"] + pieces["suffix"]
    system_block += "{{ end }}"
    return (
        system_block
        + "{{ range $i, $_ := .Messages }}{{ $last := eq (len (slice $.Messages $i)) 1 }}"
        + '{{ if eq .Role "user" }}' + pieces["user_prefix"] + "{{ .Content }}" + pieces["suffix"]
        + '{{ else if eq .Role "assistant" }}' + pieces["assistant_prefix"] + "{{ .Content }}"
        + "{{ if not $last }}" + pieces["suffix"] + "{{ end }}{{ end }}"
        + '{{ if and $last (ne .Role "assistant") }}' + pieces["generation_prompt"] + "{{ end }}{{ end }}"
    )


def turn_start(tokenizer, pieces: dict) -> str:
    """The token that opens the next turn (<|im_start|>, <|start_header_id|>, <start_of_turn>):
    the first token of the user turn's prefix when it is a special or added token of its own;
    "" when the turn header is plain text (a stop on "### " would cut replies short)."""
    head = pieces["user_prefix"].lstrip()
    if not head:
        return ""
    tokens = tokenizer.tokenize(head, add_special_tokens=False)
    special = set(tokenizer.get_added_vocab()) | set(tokenizer.all_special_tokens)
    first = tokens[0] if tokens else ""
    return first if first in special and head.startswith(first) else ""


def stop_strings(tokenizer, pieces: dict) -> list[str]:
    """Stop strings for Ollama: the turn suffix's token (<|im_end|>, <|eot_id|>), eos, and the
    token that opens a turn (<|im_start|>, <|start_header_id|>), so that a reply running on
    into a new turn header stops there."""
    stops = [pieces["suffix"].strip(), tokenizer.eos_token or "", turn_start(tokenizer, pieces)]
    return [s for i, s in enumerate(stops) if s and s not in stops[:i]]


def quoted(value: str, what: str) -> str:
    if '"""' in value:
        raise ModelfileError(f"{what} contains '\"\"\"', which a Modelfile cannot quote")
    return f'"""{value}"""'


def build_modelfile(gguf_name: str, tokenizer, system_prompt: str, parameters: dict,
                    comment: str = "") -> str:
    """The text of a Modelfile: FROM ./<gguf_name>, TEMPLATE, SYSTEM, stop and sampling
    PARAMETERs. The template pieces are verified against the training template first."""
    pieces = template_pieces(tokenizer)
    checks = [
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi there"}],
        [{"role": "system", "content": "S"}, {"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
         {"role": "user", "content": "c"}],
    ]
    for messages in checks:
        expected = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        bos = tokenizer.bos_token if uses_bos(tokenizer) and expected.startswith(tokenizer.bos_token or "\0") else ""
        if render_with_pieces(pieces, messages, bos_token=bos) != expected:
            raise ModelfileError("the Ollama template derived from the chat template does not reproduce it; "
                                 "write the Modelfile TEMPLATE by hand")
    lines = [f"# {line}".rstrip() for line in comment.strip().splitlines()] if comment else []
    lines += [f"FROM ./{gguf_name}", "", f"TEMPLATE {quoted(ollama_template(pieces), 'the template')}", ""]
    if system_prompt:
        lines += [f"SYSTEM {quoted(system_prompt, 'the system prompt')}", ""]
    for stop in stop_strings(tokenizer, pieces):
        lines.append(f'PARAMETER stop "{stop}"')
    for key, value in parameters.items():
        lines.append(f"PARAMETER {key} {value}")
    return "\n".join(lines) + "\n"


def write_modelfile(path: Path, text: str) -> Path:
    from lib.runfiles import atomic_write_text

    return atomic_write_text(Path(path), text)

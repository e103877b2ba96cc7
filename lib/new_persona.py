"""Start a persona from a folder of the person's files: write params/<name>.yaml, check it.

    make persona NAME=ada FOLDER=~/letters/ada FULL_NAME="Ada Lovelace" [SPEAKER='^Ada( Lovelace)?$']
    python -m lib.new_persona ada ~/letters/ada --full-name "Ada Lovelace" [--speaker REGEX] [--force]

The file says ``persona.kind: folder`` and ``scrape.folder``, leaves the profile card's
fields for you to fill in, and is validated (lib.params.load_params) before this command
says what to do next. It reads the folder once (lib.local_files) to tell you what it
found: documents, interviews and chats, and each file it will skip, with the reason.
An existing params file is never overwritten without --force.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path

from lib.params import ROOT, ParamsError, load_params, persona_params_dir

PROFILE_CARD_FIELDS = ("full_name", "born", "known_for", "lives_in")


def params_text(name: str, full_name: str, folder: Path, speaker_regex: str) -> str:
    """The YAML of a new folder persona (comments included)."""
    def q(value: str) -> str:
        return json.dumps(value, ensure_ascii=False)  # a JSON string is a YAML string

    card = "\n".join(f"    {key}: \"\"" for key in PROFILE_CARD_FIELDS)
    return f"""# {full_name}, from your own files (written by `make persona`; edit freely).
# Fill in the profile card below: 04 turns it into first-person answers to "who are you?"
# questions, and 07 checks the model knows who it is. Then: make chat PERSONA={name}
persona:
  name: {q(full_name)}
  kind: folder
  speaker_regex: {q(speaker_regex)}  # transcripts and chats: the person's speaker label or sender (a regex)
  system_prompt: ""           # "" = "You are {full_name}."
  profile_card:               # facts in the person's own words; empty fields are left out
    name: {q(full_name)}
{card}

scrape:
  folder: {q(str(folder))}

split:
  heldout_rule: random        # whole documents held out for evaluation, chosen with the seed
  heldout_count: 3
  seed: 1234

evaluate:
  questions_file: data/eval/generic_questions.json  # write your own {{"questions": [...]}} file
"""


def create_persona(name: str, folder, full_name: str = "", speaker_regex: str = "", force: bool = False,
                   params_dir: Path | None = None) -> tuple[Path, dict]:
    """Write <params_dir>/<name>.yaml for a folder persona and validate it.

    Returns (the params file, read_folder's info). Raises ParamsError (a bad name, an
    existing file without force, a folder that does not exist, a regex that does not
    compile) or lib.local_files.SourceError (nothing usable in the folder); on any error
    no file is left behind.
    """
    from lib.local_files import read_folder

    if not re.fullmatch(r"[a-z0-9_]+", name or ""):
        raise ParamsError(f"persona name {name!r}: use lowercase letters, digits and _ (it names params/<name>.yaml)")
    params_dir = Path(params_dir or persona_params_dir())
    target = params_dir / f"{name}.yaml"
    if target.exists() and not force:
        raise ParamsError(f"{target} exists; edit it, or pass --force (FORCE=1) to write it again")
    folder = Path(folder).expanduser().resolve()
    if not folder.is_dir():
        raise ParamsError(f"{folder}: not a folder")
    full_name = full_name.strip() or name.replace("_", " ").title()
    try:
        re.compile(speaker_regex)
    except re.error as err:
        raise ParamsError(f"--speaker / SPEAKER {speaker_regex!r} is not a valid regex: {err}") from None
    _, info = read_folder(folder, persona_regex=speaker_regex, persona_name=full_name, log=lambda *a: None)
    try:
        shown = folder.relative_to(ROOT)
    except ValueError:
        shown = folder
    params_dir.mkdir(parents=True, exist_ok=True)
    draft = params_dir / f".{name}.yaml.new"  # validated before it replaces anything
    draft.write_text(params_text(name, full_name, shown, speaker_regex), encoding="utf-8")
    try:
        check_params_file(draft, name, shown_as=target)
    except ParamsError:
        draft.unlink()
        raise
    os.replace(draft, target)
    return target, info


def check_params_file(path: Path, name: str, shown_as: Path) -> None:
    """load_params on a params file that is not (yet) at its place: raises ParamsError,
    whose message names shown_as."""
    import shutil
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        shutil.copyfile(path, Path(folder) / f"{name}.yaml")
        saved = os.environ.get("PERSONA_PARAMS_DIR")
        os.environ["PERSONA_PARAMS_DIR"] = folder
        try:
            load_params(name, "cpu")
        except ParamsError as err:
            raise ParamsError(str(err).replace(str(Path(folder) / f"{name}.yaml"), str(shown_as))) from None
        finally:
            if saved is None:
                os.environ.pop("PERSONA_PARAMS_DIR", None)
            else:
                os.environ["PERSONA_PARAMS_DIR"] = saved


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lib.new_persona", description=__doc__.split("\n\n")[0])
    parser.add_argument("name", help="short name: params/<name>.yaml, make chat PERSONA=<name>")
    parser.add_argument("folder", help="the folder of the person's files")
    parser.add_argument("--full-name", default="", help='the name the model should give: "Ada Lovelace"')
    parser.add_argument("--speaker", default="", help="regex of the person's speaker label / chat sender")
    parser.add_argument("--force", action="store_true", help="overwrite an existing params file")
    args = parser.parse_args(argv)
    from lib.local_files import SourceError
    try:
        target, info = create_persona(args.name, args.folder, args.full_name, args.speaker, args.force)
    except (ParamsError, SourceError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {target}")
    print(f"found {info['documents']} usable files of {info['listed']}: "
          + ", ".join(f"{n} {kind}s" for kind, n in sorted(info["by_kind"].items())))
    for skipped in info["skipped"]:
        print(f"  will skip {skipped['file']}: {skipped['reason']}")
    for warning in info["warnings"]:
        print(f"  warning: {warning}")
    print(f"next: fill in persona.profile_card in {target}, then run: make chat PERSONA={args.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The layout of lib/ tells the truth about the design: one concern per module, modules of a
stage import only shared modules and the modules of their own or an earlier stage, shared
modules import no stage module, no helper is defined twice, and lib/__init__.py's map lists
every module."""
import ast
from pathlib import Path

import pytest

from lib.runner import lib_imports

LIB = Path(__file__).resolve().parent.parent / "lib"
MODULES = sorted(p.stem for p in LIB.glob("*.py") if p.stem != "__init__")

# stage -> its modules (prefix* for a family); every other module is shared by the stages
STAGE_MODULES = {
    1: ["scrape", "essays", "transcripts", "speaker_labels", "subtitles", "local_files", "chats", "new_persona"],
    2: ["split"],
    3: ["train*", "chat_data"],  # 03 and 05 train with the same code
    4: ["qa_*"],
    6: ["quant_gate", "gguf_checks", "gguf_export", "modelfile"],
    7: ["eval_*", "style_metrics", "authorship", "progress_log"],
}
TOP = {"runner", "stage", "talk", "hub"}  # drive the stages or use their results: may import anything
MAX_LINES = 420


def stage_of(module: str) -> int | None:
    for stage, patterns in STAGE_MODULES.items():
        for pattern in patterns:
            if module == pattern or (pattern.endswith("*") and module.startswith(pattern[:-1])):
                return stage
    return None


def test_every_module_is_small():
    sizes = {m: len((LIB / f"{m}.py").read_text().splitlines()) for m in MODULES}
    assert not {m: n for m, n in sizes.items() if n > MAX_LINES}


@pytest.mark.parametrize("module", [m for m in MODULES if m not in TOP])
def test_imports_run_forward(module):
    """A shared module imports no stage's module; a stage's module imports shared modules and
    the modules of its own or an earlier stage (07 may read 04's passages; 04 never 07's)."""
    mine = stage_of(module)
    for other in lib_imports(LIB / f"{module}.py"):
        theirs = stage_of(other)
        assert other not in TOP, f"{module} imports {other}, which drives the stages"
        if theirs is None:
            continue
        assert mine is not None, f"shared module {module} imports {other}, a module of stage {theirs:02d}"
        assert theirs <= mine, f"{module} (stage {mine:02d}) imports {other} of a later stage ({theirs:02d})"


def test_no_helper_is_defined_twice():
    """A top-level function or class name is defined in one lib module only (main, the
    command-line entry of several modules, excepted)."""
    where: dict[str, list[str]] = {}
    for module in MODULES:
        for node in ast.parse((LIB / f"{module}.py").read_text()).body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name != "main":
                where.setdefault(node.name, []).append(module)
    assert not {name: modules for name, modules in where.items() if len(modules) > 1}


def test_the_map_in_lib_init_lists_every_module():
    doc = ast.get_docstring(ast.parse((LIB / "__init__.py").read_text())) or ""
    assert not [m for m in MODULES if f"{m}.py" not in doc]

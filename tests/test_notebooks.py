"""Each notebooks/NN_stage.py has an output-free .ipynb twin with the same cells, and the
shape the runner relies on: a parameters cell with persona, profile and overrides."""
import ast
from pathlib import Path

import jupytext
import nbformat
import pytest

from lib.runfiles import STAGES

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


def test_every_stage_has_a_notebook_pair():
    for stage in STAGES:
        assert (NOTEBOOKS / f"{stage}.py").is_file(), f"notebooks/{stage}.py missing"
        assert (NOTEBOOKS / f"{stage}.ipynb").is_file(), f"notebooks/{stage}.ipynb missing"


@pytest.mark.parametrize("script", sorted(NOTEBOOKS.glob("[0-9][0-9]_*.py")), ids=lambda p: p.stem)
def test_pair_in_sync_and_output_free(script):
    """The runner's own check (lib.runner.twin_difference): it refuses a stage whose pair differs."""
    from lib.runner import twin_difference

    problem = twin_difference(script)
    assert problem is None, f"{problem}: run `make notebooks` (jupytext --to ipynb {script})"
    ipynb = nbformat.read(script.with_suffix(".ipynb"), as_version=4)
    for cell in ipynb.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, f"{script.with_suffix('.ipynb').name} has outputs"


@pytest.mark.parametrize("script", sorted(NOTEBOOKS.glob("[0-9][0-9]_*.py")), ids=lambda p: p.stem)
def test_parameters_cell(script):
    notebook = jupytext.read(script)
    tagged = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{script.name}: needs exactly one cell tagged parameters"
    names = {node.targets[0].id for node in ast.parse(tagged[0].source).body if isinstance(node, ast.Assign)}
    assert {"persona", "profile", "overrides"} <= names
    assert notebook.cells[0].cell_type == "markdown", f"{script.name}: opens with a markdown cell"
    source = script.read_text()
    assert "sys.exit" not in source and "%run" not in source


def test_setup_cells_differ_only_in_the_stage_name():
    """The cell after the parameters is the one setup: find or fetch the repository, then
    lib.stage.open_stage; every notebook's is the same apart from its stage's name."""
    setups = {}
    for stage in STAGES:
        cells = jupytext.read(NOTEBOOKS / f"{stage}.py").cells
        index = next(i for i, c in enumerate(cells) if "parameters" in c.metadata.get("tags", []))
        setups[stage] = cells[index + 1].source
        assert f'open_stage("{stage}", persona, profile, overrides)' in setups[stage], stage
    assert len({source.replace(stage, "STAGE") for stage, source in setups.items()}) == 1


@pytest.mark.slow
def test_a_notebook_opened_on_its_own_fetches_the_repository_and_runs(tmp_path, monkeypatch):
    """As in Colab or Kaggle: the .ipynb alone in a folder with no repository above it. Its
    setup cell clones repo_url (here this repository, by file://), installs the requirements
    into the running Python and runs the stage; run again (a restarted runtime), it reuses
    the clone."""
    import shutil
    import subprocess

    import papermill

    root = NOTEBOOKS.parent
    alone = tmp_path / "content"
    alone.mkdir()
    shutil.copy(NOTEBOOKS / "01_scrape.ipynb", alone)
    monkeypatch.setenv("RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("OFFLINE", "1")
    parameters = {"persona": "pg", "profile": "smoke", "overrides": "scrape.max_documents=3",
                  "repo_url": f"file://{root}"}
    for run in ("first", "restarted"):
        papermill.execute_notebook(str(alone / "01_scrape.ipynb"), str(alone / f"{run}.ipynb"), parameters=parameters,
                                   cwd=str(alone), kernel_name="python3", progress_bar=False)
        metrics = tmp_path / "runs" / "pg" / "01_scrape" / "metrics.json"
        assert metrics.is_file(), run
        metrics.unlink()
    head = lambda repo: subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True).stdout
    assert head(alone / "persona-llm") == head(root)

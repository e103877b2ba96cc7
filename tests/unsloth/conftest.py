"""The unsloth tests run in their own pytest session (`make test` runs two): importing
unsloth patches transformers, trl and peft for the whole process, which must not leak into
the hf tests. unsloth is imported here first, before anything imports transformers, as a
user's notebook does; on a CPU it runs in its CPU mode."""
import importlib.util
import os
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(TESTS))  # tiny_models
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# this file is the module "conftest" for the tests here: re-export tests/conftest.py's helpers
# (its fixtures reach these tests through pytest as usual)
_spec = importlib.util.spec_from_file_location("tests_conftest", TESTS / "conftest.py")
_root = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_root)
PYTHON, ROOT, labeled_runs = _root.PYTHON, _root.ROOT, _root.labeled_runs
assert_same_adapter, kill_at_first_checkpoint = _root.assert_same_adapter, _root.kill_at_first_checkpoint

from lib.backend import unsloth_problem  # noqa: E402  (imports unsloth, before transformers)

PROBLEM = unsloth_problem()
if PROBLEM:  # never skipped: `make setup` installs unsloth, so its absence is a failure
    raise RuntimeError(f"the unsloth tests cannot run: {PROBLEM}")

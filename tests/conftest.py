"""Fixtures and test-session setup: generated code goes to throwaway cache directories.

Plain helpers shared by test modules are in helpers.py (``from helpers import ...``), not here.
"""
from __future__ import annotations

import atexit
import os
import shutil
import tempfile

import pytest

# Generated per-tape code (scalargrad/jit/codegen/) goes to a throwaway directory, never the
# user's cache; subprocesses started by tests inherit it.
os.environ["SCALARGRAD_CACHE_DIR"] = tempfile.mkdtemp(prefix="scalargrad-test-cache-")
atexit.register(shutil.rmtree, os.environ["SCALARGRAD_CACHE_DIR"], ignore_errors=True)
# A test session compiles generated code for hundreds of distinct tapes, far more than one program
# would: the per-process cap (100 by default) is tested on its own (test_codegen.py), not hit by
# whichever tests come last.
os.environ["SCALARGRAD_CODEGEN_MAX_TAPES"] = "100000"


@pytest.fixture(autouse=True, scope="module")
def cache_dir(tmp_path_factory):
    """Generated code (jit/codegen/) of each test module goes to its own temporary directory
    (compiled once per module), never to the user's cache. A background compile a module started is
    waited for before the next module's directory is set, so that it writes into its own."""
    from scalargrad.jit.tier import wait_for_compiles
    path = tmp_path_factory.mktemp("codegen-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SCALARGRAD_CACHE_DIR", str(path))
        yield path
        wait_for_compiles()

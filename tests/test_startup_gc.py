"""The garbage collector while a process starts (serving/lifecycle.py): paused while the imports and the models load
what stays, then on, with start-up's objects frozen. A worker keeps it off from service.py's first line until
DryBeans.__init__ settles it; every other process that imports service.py has it back at the module's end."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from serving.lifecycle import collector_paused
from tests.conftest import ROOT

# In a fresh interpreter, as BentoML's worker does it: server_context.worker_index set, then the service imported.
START = """
import asyncio, gc, json, sys
import bentoml
if sys.argv[1] == "worker":
    bentoml.server_context.worker_index = 1
import service
after_import = gc.isenabled()
instance = service.DryBeans.inner()
print(json.dumps({"after_import": after_import, "after_init": gc.isenabled(), "threshold": gc.get_threshold()[0],
                  "frozen": gc.get_freeze_count()}))
asyncio.run(instance.close())
"""


def test_collector_paused_restores_what_it_found() -> None:
    assert gc.isenabled()
    with pytest.raises(RuntimeError), collector_paused():
        assert not gc.isenabled()
        raise RuntimeError("start-up failed")
    assert gc.isenabled()
    gc.disable()
    try:
        with collector_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()  # paused by someone else: left to them
    finally:
        gc.enable()


@pytest.mark.parametrize("worker", [True, False], ids=["worker", "not a worker"])
def test_the_collector_is_on_and_settled_once_the_service_has_started(worker: bool, trained_model_home: Path,
                                                                      tmp_path: Path) -> None:
    env = {**os.environ, "DRYBEANS_STATE_DIR": str(tmp_path), "DRYBEANS_REUSE_PORT": "false",
           "BENTOML_DO_NOT_TRACK": "true"}
    env.pop("DRYBEANS_SQLITE_PATH", None)
    env.pop("DRYBEANS_SPOOL_DIR", None)
    started = subprocess.run([sys.executable, "-c", START, "worker" if worker else "other"], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=120)
    assert started.returncode == 0, started.stderr[-2000:]
    state = json.loads(started.stdout.strip().splitlines()[-1])
    # A worker keeps it off until __init__; anything else gets it back as soon as service.py is imported.
    assert state["after_import"] is not worker
    assert state["after_init"] is True
    assert state["threshold"] == 20_000
    assert state["frozen"] > 100_000  # the modules, classes and model start-up made, never walked again

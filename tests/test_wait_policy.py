"""Entry points pick OpenMP's wait policy before torch loads: spin on idle CPUs, wait passively on busy ones.

Importing sepnet as a library changes nothing: no environment variable, no /proc/stat read.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from sepnet.app import wait_policy

PRINT_POLICY = (
    "import os; from sepnet.app.wait_policy import choose_wait_policy; choose_wait_policy(); "
    "print(os.environ.get('OMP_WAIT_POLICY', 'unset'))"
)

# Runs an entry point as `python -m sepnet.merge --help` does and prints OMP_WAIT_POLICY as torch is imported.
POLICY_AS_TORCH_LOADS = """
import os, runpy, sys
seen = []
class Watch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" and not seen:
            seen.append(os.environ.get("OMP_WAIT_POLICY", "unset"))
sys.meta_path.insert(0, Watch())
sys.argv = ["merge", "--help"]
try:
    runpy.run_module("sepnet.merge", run_name="__main__", alter_sys=True)
except SystemExit:
    pass
print(seen[0] if seen else "torch never imported")
"""

# Imports the library's packages and reports any environment change and any /proc/stat read. The
# third-party libraries are imported first: Lightning sets variables of its own as it loads.
LIBRARY_IMPORT = """
import os, sys
import hydra, lightning, numpy, omegaconf, torch
reads = []
sys.addaudithook(lambda event, args: event == "open" and "/proc/stat" in str(args[0]) and reads.append(args[0]))
before = dict(os.environ)
import sepnet, sepnet.app, sepnet.app.wait_policy, sepnet.app.scaffold, sepnet.audio, sepnet.dsp, sepnet.models
import sepnet.data, sepnet.training, sepnet.checkpoints, sepnet.evaluation, sepnet.reproduction
import sepnet.train, sepnet.evaluate, sepnet.separate, sepnet.merge, sepnet.check_data, sepnet.reproduce
import sepnet.compare, sepnet.evaluation.curves
changed = sorted(k for k in set(before) | set(os.environ) if before.get(k) != os.environ.get(k))
print("changed:", changed, "reads:", reads)
"""


def run_python(code: str, env: dict[str, str]) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120, check=True
    )
    return result.stdout.strip().splitlines()[-1]


def policy_of_a_fresh_start(env: dict[str, str]) -> str:
    return run_python(PRINT_POLICY, env)


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    return {**env, **extra}


class BusyCpus:
    """One spinning process per core: whatever else runs, the CPUs are busy meanwhile."""

    def __enter__(self):
        self.hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(os.cpu_count() or 1)]
        time.sleep(0.3)  # let them start spinning
        return self

    def __exit__(self, *exc):
        for hog in self.hogs:
            hog.kill()
            hog.wait()


def test_busy_fraction_is_a_share_of_all_cpus():
    busy = wait_policy.cpu_busy_fraction(0.02)
    if busy is None:
        pytest.skip("no /proc/stat on this system")
    assert 0.0 <= busy <= 1.0


def test_a_policy_the_user_exported_wins():
    assert policy_of_a_fresh_start(clean_env(OMP_WAIT_POLICY="ACTIVE")) == "ACTIVE"


@pytest.mark.skipif(not os.path.exists("/proc/stat"), reason="the load check reads /proc/stat")
def test_busy_cpus_make_threads_wait_passively():
    with BusyCpus():
        assert policy_of_a_fresh_start(clean_env()) == "PASSIVE"


@pytest.mark.skipif(not os.path.exists("/proc/stat"), reason="the load check reads /proc/stat")
def test_an_entry_point_chooses_the_policy_before_torch_loads():
    with BusyCpus():
        assert run_python(POLICY_AS_TORCH_LOADS, clean_env()) == "PASSIVE"


def test_importing_the_library_changes_nothing():
    assert run_python(LIBRARY_IMPORT, clean_env()) == "changed: [] reads: []"

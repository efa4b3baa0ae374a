"""sepnet picks OpenMP's wait policy as it is imported: spin on idle CPUs, wait passively on busy ones."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

import sepnet

PRINT_POLICY = "import os, sepnet; print(os.environ.get('OMP_WAIT_POLICY', 'unset'))"


def policy_of_a_fresh_import(env: dict[str, str]) -> str:
    result = subprocess.run(
        [sys.executable, "-c", PRINT_POLICY], env=env, capture_output=True, text=True, timeout=60, check=True
    )
    return result.stdout.strip()


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    return {**env, **extra}


def test_busy_fraction_is_a_share_of_all_cpus():
    busy = sepnet._cpu_busy_fraction(0.02)
    if busy is None:
        pytest.skip("no /proc/stat on this system")
    assert 0.0 <= busy <= 1.0


def test_a_policy_the_user_exported_wins():
    assert policy_of_a_fresh_import(clean_env(OMP_WAIT_POLICY="ACTIVE")) == "ACTIVE"


@pytest.mark.skipif(not os.path.exists("/proc/stat"), reason="the load check reads /proc/stat")
def test_busy_cpus_make_threads_wait_passively():
    # One spinning process per core: whatever else runs, the CPUs are busy while sepnet is imported.
    hogs = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(os.cpu_count() or 1)
    ]
    try:
        time.sleep(0.3)  # let them start spinning
        assert policy_of_a_fresh_import(clean_env()) == "PASSIVE"
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()

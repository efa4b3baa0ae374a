"""Checkpoints are written atomically and loaded without running pickled code."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest
import torch

from sepnet import checkpoint
from sepnet.checkpoint_io import AtomicCheckpointIO, stale_temp_files
from sepnet.errors import SepnetError
from sepnet.train import run_training


def test_failed_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    io = AtomicCheckpointIO()
    last = tmp_path / "checkpoints" / "last.ckpt"
    io.save_checkpoint({"global_step": 1, "w": torch.ones(1000)}, last)

    def disk_full_halfway(obj, f):
        f.write(b"\x80\x02" + b"x" * 50_000)  # a partial pickle reaches the disk, then the write fails
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("sepnet.checkpoint_io.torch.save", disk_full_halfway)
    with pytest.raises(SepnetError) as error:
        io.save_checkpoint({"global_step": 2, "w": torch.zeros(1000)}, last)
    assert str(error.value) == (
        f"cannot write checkpoint '{last}' (No space left on device); free disk space or choose another "
        "output folder with hydra.run.dir=<folder> (the previous checkpoint is intact)"
    )
    kept = io.load_checkpoint(last)
    assert kept["global_step"] == 1 and torch.equal(kept["w"], torch.ones(1000))
    assert os.listdir(last.parent) == ["last.ckpt"]  # no temporary file left behind


SLOW_WRITER = textwrap.dedent(
    """
    import sys, time, torch
    from sepnet.checkpoint_io import AtomicCheckpointIO, atomic_torch_save
    path = sys.argv[1]
    AtomicCheckpointIO().save_checkpoint({"global_step": 1, "w": torch.ones(10)}, path)

    def slow_save(obj, f):
        f.write(b"\\x80\\x02partial")
        f.flush()
        print("writing", flush=True)
        time.sleep(60)

    atomic_torch_save({"global_step": 2}, path, save=slow_save)
    """
)


@pytest.mark.slow
def test_kill_during_save_keeps_the_previous_checkpoint(tmp_path):
    last = tmp_path / "last.ckpt"
    writer = subprocess.Popen(
        [sys.executable, "-c", SLOW_WRITER, str(last)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    line = writer.stdout.readline()
    assert line == "writing\n", writer.communicate()[1][-2000:]
    writer.send_signal(signal.SIGKILL)
    writer.wait(timeout=30)

    assert checkpoint.read_checkpoint(last)["global_step"] == 1  # the previous file, whole
    assert len(stale_temp_files(last)) == 1  # the killed write's temporary file, never named last.ckpt
    AtomicCheckpointIO().save_checkpoint({"global_step": 3}, last)
    assert checkpoint.read_checkpoint(last)["global_step"] == 3
    assert stale_temp_files(last) == []  # cleaned up by the next good save


class RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_checkpoint_that_would_run_code_is_refused(tiny_run, tmp_path):
    marker = tmp_path / "code-ran"
    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "sepnet": {"config": {}}, "payload": RunsCode(marker)}, evil)
    expected = (
        f"checkpoint '{evil}' was refused: it would call posix.system when loaded, and sepnet never runs code "
        "from a checkpoint; use a checkpoint written by sepnet, or re-save a trusted one as a plain state_dict "
        "of tensors"
    )
    with pytest.raises(SepnetError) as error:
        checkpoint.load(evil)
    assert str(error.value) == expected
    with pytest.raises(SepnetError) as error:  # what Lightning's resume reads through
        AtomicCheckpointIO().load_checkpoint(evil)
    assert str(error.value) == expected
    with pytest.raises(SepnetError) as error:  # refused before any training starts
        run_training(tiny_run(f"resume={evil}"))
    assert str(error.value) == expected
    assert not marker.exists()


def test_truncated_checkpoint_is_one_line(tmp_path):
    path = tmp_path / "cut.ckpt"
    torch.save({"w": torch.ones(10_000)}, path)
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(SepnetError, match=r"^checkpoint '.*cut.ckpt' cannot be read \(.*\); it may be truncated"):
        checkpoint.read_checkpoint(path)

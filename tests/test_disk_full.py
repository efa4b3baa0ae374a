"""A full disk while saving a checkpoint or writing stems: one line naming the disk, the free space and the
space needed; the previous file stays intact and no temporary file is left."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest
import soundfile as sf
import torch

from sepnet.audio import io as audio_io
from sepnet.audio.io import AudioWriter, write_audio
from sepnet.checkpoints.lightning_io import AtomicCheckpointIO
from sepnet.errors import SepnetError


class FullDisk(io.RawIOBase):
    """A file whose disk fills after ``room`` bytes: its write raises ENOSPC as a real file would."""

    def __init__(self, target, room: int):
        self.target, self.room = target, room

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        if len(data) > self.room:
            raise OSError(28, "No space left on device")
        self.room -= len(data)
        return self.target.write(data)


def test_torch_save_on_a_full_disk_is_one_line_and_keeps_the_checkpoint(tmp_path, monkeypatch):
    io_plugin = AtomicCheckpointIO()
    last = tmp_path / "checkpoints" / "last.ckpt"
    io_plugin.save_checkpoint({"global_step": 1, "w": torch.ones(1000)}, last)
    real_save = torch.save

    def save_until_full(obj, f):
        real_save(obj, FullDisk(f, room=2000))  # torch raises its own RuntimeError, the OSError as its context

    monkeypatch.setattr("torch.save", save_until_full)
    monkeypatch.setattr("sepnet.atomic.shutil.disk_usage", lambda folder: _usage(1536))
    with pytest.raises(SepnetError) as error:
        io_plugin.save_checkpoint({"global_step": 2, "w": torch.zeros(250_000)}, last)
    assert str(error.value) == (
        f"cannot write checkpoint '{last}' (disk full: 1.5 KiB free on the disk holding '{last.parent}', about "
        "976.6 KiB needed); free disk space or choose another output folder with hydra.run.dir=<folder> "
        "(the previous checkpoint is intact)"
    )
    kept = io_plugin.load_checkpoint(last)
    assert kept["global_step"] == 1 and torch.equal(kept["w"], torch.ones(1000))
    assert os.listdir(last.parent) == ["last.ckpt"]


def _usage(free: int):
    import shutil

    return shutil._ntuple_diskusage(total=10**9, used=10**9 - free, free=free)


@pytest.mark.parametrize("streaming", [True, False], ids=["AudioWriter", "write_audio"])
def test_libsndfile_system_error_on_a_full_disk_names_the_disk(tmp_path, monkeypatch, streaming):
    out = tmp_path / "separated" / "song" / "vocals.wav"
    write_audio(out, np.zeros((2, 100), np.float32), 44100)  # an earlier result, kept

    def system_error(self, data):
        raise sf.LibsndfileError(2)  # libsndfile's "System error." when the disk refuses

    monkeypatch.setattr(sf.SoundFile, "write", system_error)
    monkeypatch.setattr(audio_io, "free_space", lambda folder: 4096)
    monkeypatch.setattr("sepnet.atomic.free_space", lambda folder: 4096)
    with pytest.raises(SepnetError) as error:
        if streaming:
            with AudioWriter(out, 44100, 2, expected_frames=44100 * 60) as writer:
                writer.write(np.zeros((2, 1000), np.float32))
        else:
            write_audio(out, np.zeros((2, 44100 * 60), np.float32), 44100)
    assert str(error.value) == (
        f"cannot write '{out}' (disk full: 4.0 KiB free on the disk holding '{out.parent}', about 20.2 MiB needed); "
        "free disk space or choose a writable output folder"
    )
    assert sf.info(out).frames == 100 and os.listdir(out.parent) == ["vocals.wav"]


def test_another_libsndfile_error_with_room_on_the_disk_is_not_called_a_full_disk(tmp_path, monkeypatch):
    monkeypatch.setattr(sf.SoundFile, "write", lambda self, data: (_ for _ in ()).throw(sf.LibsndfileError(2)))
    monkeypatch.setattr(audio_io, "free_space", lambda folder: 10**12)
    with pytest.raises(SepnetError) as error:
        write_audio(tmp_path / "x.wav", np.zeros((2, 10), np.float32), 44100)
    assert "disk full" not in str(error.value) and "(soundfile: System error.)" in str(error.value)

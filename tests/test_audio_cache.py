"""The decoded-audio cache: decode once, reuse across epochs and restarts, rebuild when a file changes."""

from __future__ import annotations

import os

import numpy as np
import pytest
import soundfile as sf
from conftest import TINY_RUN, compose_config, write_track
from hydra.utils import instantiate

from sepnet.audio import cache as audio_cache
from sepnet.audio.cache import AudioCache, resolve_cache_dir
from sepnet.errors import SepnetError


@pytest.fixture
def decodes(monkeypatch) -> list:
    """Every file the cache decodes, in order (the real decoder still runs)."""
    calls = []
    real = audio_cache.decode

    def counting(path, stream, sample_rate):
        calls.append(path.name)
        return real(path, stream, sample_rate)

    monkeypatch.setattr(audio_cache, "decode", counting)
    return calls


def folder_datamodule(root, *overrides):
    cfg = compose_config(
        "train",
        ["data=folder", f"data.train_dir={root / 'train'}", f"data.val_dir={root / 'val'}", *TINY_RUN,
         "augment=remix", *overrides],
        root / "run",
    )
    datamodule = instantiate(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("fit")
    return datamodule


def test_epochs_and_restarts_do_not_decode_and_a_changed_file_is_rebuilt(tmp_path, decodes):
    write_track(tmp_path / "train" / "a", seed=1, suffix=".ogg")  # compressed: the expensive case
    write_track(tmp_path / "train" / "b", seed=2)
    write_track(tmp_path / "val" / "c", seed=3)
    datamodule = folder_datamodule(tmp_path)
    assert len(decodes) == 12 and datamodule.cache.decoded == 12
    assert datamodule.cache.folder == tmp_path / ".sepnet-cache"

    decodes.clear()
    loader = datamodule.train_dataloader()
    for epoch in (0, 1):
        loader.sampler.set_epoch(epoch)
        assert len(list(loader)) == 2
    list(datamodule.val_dataloader())
    assert decodes == []  # the epochs read memory-mapped arrays only

    restarted = folder_datamodule(tmp_path)
    assert decodes == [] and restarted.cache.reused == 12
    for a, b in zip(datamodule.tracks["train"], restarted.tracks["train"]):
        for x, y in zip(a.stems, b.stems):
            np.testing.assert_array_equal(x, y)

    new_vocals = np.full((40000, 2), 0.25, dtype=np.float32)
    sf.write(tmp_path / "train" / "b" / "vocals.wav", new_vocals, 16000)
    stat = os.stat(tmp_path / "train" / "b" / "vocals.wav")
    os.utime(tmp_path / "train" / "b" / "vocals.wav", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    changed = folder_datamodule(tmp_path)
    assert decodes == ["vocals.wav"]
    np.testing.assert_allclose(changed.tracks["train"][1].stems[3][:, 1000:2000], 0.25, atol=1e-3)
    # The old entry of that file is gone: one entry per source file.
    assert len(list((tmp_path / ".sepnet-cache").glob("*.npy"))) == 12


def test_damaged_entry_is_rebuilt_and_entries_are_read_only(tmp_path, decodes):
    write_track(tmp_path / "t", stems=("vocals",))
    cache = AudioCache(tmp_path / "cache", 22050)
    first = cache.load(tmp_path / "t" / "vocals.wav")
    assert first.dtype == np.float32 and first.shape == (2, round(2.5 * 22050))
    assert not first.flags.writeable
    first = np.array(first)  # damaging a mapped file in place would fault its mapping (sepnet only renames)
    (entry,) = (tmp_path / "cache").glob("*.npy")
    entry.write_bytes(b"garbage")
    again = AudioCache(tmp_path / "cache", 22050).load(tmp_path / "t" / "vocals.wav")
    np.testing.assert_array_equal(first, again)
    assert len(decodes) == 2
    # Another rate is another entry.
    assert AudioCache(tmp_path / "cache", 16000).load(tmp_path / "t" / "vocals.wav").shape == (2, 40000)


def test_cache_location_falls_back_when_the_data_root_is_not_writable(tmp_path, monkeypatch):
    blocker = tmp_path / "read-only-root"
    blocker.write_text("a file where a folder would have to be")
    monkeypatch.setattr(audio_cache, "USER_CACHE", tmp_path / "home-cache")
    assert resolve_cache_dir(None, blocker / ".sepnet-cache") == tmp_path / "home-cache"
    assert resolve_cache_dir(tmp_path / "mine", blocker / ".sepnet-cache") == tmp_path / "mine"
    with pytest.raises(SepnetError, match=r"data.cache_dir '.*' cannot be created or written; set data.cache_dir="):
        resolve_cache_dir(blocker / "cache", tmp_path)

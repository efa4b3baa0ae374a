"""A decoded-audio cache entry full of NaN or of the wrong length is decoded again, with a warning naming the
entry (not the source file, which is fine); later runs then find a good entry."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from conftest import write_track

from sepnet.atomic import write_bytes
from sepnet.audio.cache import AudioCache


def damage(entry, audio: np.ndarray) -> None:
    """Replace ``entry`` by a valid .npy of ``audio`` (by rename, as any writer of the cache would)."""
    import io

    buffer = io.BytesIO()
    np.save(buffer, audio)
    write_bytes(entry, buffer.getvalue())


@pytest.mark.parametrize(
    ("damaged", "why"),
    [
        (lambda good: np.full_like(good, np.nan), "NaN or Inf samples"),
        (lambda good: good[:, : good.shape[1] // 2].copy(), "samples, not the"),
        (lambda good: np.concatenate([good, good], axis=1), "samples, not the"),
        (lambda good: good.astype(np.float64), "not float32 (2, samples)"),
    ],
    ids=["nan", "short", "long", "float64"],
)
def test_a_damaged_entry_is_rebuilt_and_the_warning_names_the_entry(tmp_path, caplog, damaged, why):
    write_track(tmp_path / "t", stems=("vocals",))
    source = tmp_path / "t" / "vocals.wav"
    good = np.array(AudioCache(tmp_path / "cache", 22050).load(source))
    (entry,) = (tmp_path / "cache").glob("*.npy")
    damage(entry, damaged(good))

    cache = AudioCache(tmp_path / "cache", 22050)
    with caplog.at_level(logging.WARNING, logger="sepnet.audio.cache"):
        again = cache.load(source)
    np.testing.assert_array_equal(again, good)
    assert cache.decoded == 1 and cache.reused == 0
    (warning,) = [r.getMessage() for r in caplog.records]
    assert warning.startswith(f"decoded-audio cache entry '{entry}' is damaged (") and why in warning
    assert warning.endswith("decoding 'vocals.wav' again")

    later = AudioCache(tmp_path / "cache", 22050)  # the next run reuses the rebuilt entry
    np.testing.assert_array_equal(later.load(source), good)
    assert later.reused == 1 and len(list((tmp_path / "cache").glob("*.npy"))) == 1

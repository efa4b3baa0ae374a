"""``separate.on_error``: stop (default) ends at the first bad file of a folder; skip goes on, lists the bad files
at the end and still exits non-zero. A symbolic link loop is named as one, not as a missing file."""

from __future__ import annotations

import os

import numpy as np
import pytest
import soundfile as sf
from conftest import compose_config

from sepnet.errors import SepnetError
from sepnet.separate import run_separation

STEMS = ["bass", "drums", "other", "vocals"]


def separate(ckpt, input_path, out, tmp_path, *overrides):
    cfg = compose_config("separate", [f"ckpt={ckpt}", f"input={input_path}", f"out={out}", *overrides], tmp_path / "run")
    return run_separation(cfg)


@pytest.fixture
def folder(tmp_path):
    """A folder of two good songs, a corrupt one between them and a link that loops."""
    songs = tmp_path / "songs"
    songs.mkdir()
    tone = (0.1 * np.sin(np.arange(4000) / 8000 * 2 * np.pi * 220)).astype(np.float32)
    sf.write(songs / "a.wav", tone, 8000)
    (songs / "b.wav").write_bytes(b"RIFF not really a wav")
    sf.write(songs / "c.wav", tone, 8000)
    os.symlink(songs / "d.wav", songs / "d.wav")  # points at itself
    return songs


def test_stop_ends_at_the_first_bad_file(tiny_checkpoint, folder, tmp_path):
    with pytest.raises(SepnetError, match=f"'{folder / 'b.wav'}' is not a readable audio file"):
        separate(tiny_checkpoint, folder, tmp_path / "out", tmp_path)
    assert sorted(p.name for p in (tmp_path / "out" / "test").iterdir()) == ["a"]


def test_skip_goes_on_lists_the_skipped_files_and_fails_at_the_end(tiny_checkpoint, folder, tmp_path, capsys):
    out = tmp_path / "out"
    with pytest.raises(SepnetError) as error:
        separate(tiny_checkpoint, folder, out, tmp_path, "separate.on_error=skip")
    assert str(error.value) == (
        f"2 of 4 input files could not be separated (listed above); fix or remove them and run again "
        f"(the 2 others are written in '{out}')"
    )
    for song in ("a", "c"):
        assert sorted(p.name for p in (out / "test" / song).iterdir()) == [f"{s}.wav" for s in STEMS]
    assert not (out / "test" / "b").exists() and not (out / "test" / "d").exists()
    printed = capsys.readouterr().out
    listing = printed[printed.index("skipped 2 of 4 files (separate.on_error=skip):"):].splitlines()
    assert listing[1].startswith(f"  {folder / 'b.wav'}: '{folder / 'b.wav'}' is not a readable audio file")
    assert listing[2] == (
        f"  {folder / 'd.wav'}: '{folder / 'd.wav'}' is a symbolic link loop (it points, through links, back to "
        "itself); point it at a real file"
    )


def test_a_bad_on_error_setting_is_one_line(tiny_checkpoint, folder, tmp_path):
    with pytest.raises(SepnetError, match=r"^separate.on_error='ignore' is not an option; use stop"):
        separate(tiny_checkpoint, folder, tmp_path / "out", tmp_path, "separate.on_error=ignore")


def test_a_symlink_loop_given_as_input_is_named_as_one(tiny_checkpoint, tmp_path):
    loop = tmp_path / "loop.wav"
    os.symlink(tmp_path / "other.wav", loop)
    os.symlink(loop, tmp_path / "other.wav")
    with pytest.raises(SepnetError) as error:
        separate(tiny_checkpoint, loop, tmp_path / "out", tmp_path)
    assert str(error.value) == (
        f"input '{loop}' is a symbolic link loop (it points, through links, back to itself); point it at a real file"
    )
    dangling = tmp_path / "gone.wav"
    os.symlink(tmp_path / "nowhere.wav", dangling)
    with pytest.raises(SepnetError) as error:
        separate(tiny_checkpoint, dangling, tmp_path / "out", tmp_path)
    assert str(error.value) == (
        f"input '{dangling}' is a symbolic link to '{tmp_path / 'nowhere.wav'}', which does not exist; fix or remove the link"
    )

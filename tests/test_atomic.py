"""sepnet.atomic: a target is always absent, the old file or the whole new one; a failed write is one line."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from sepnet.atomic import atomic_write, stale_temp_files, temp_path_for, write_text
from sepnet.errors import SepnetError


def test_a_clean_write_replaces_the_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "deep" / "results.json"
    write_text(target, "old")
    write_text(target, "new ü")
    assert target.read_text(encoding="utf-8") == "new ü"
    assert os.listdir(target.parent) == ["results.json"]


def test_a_failing_block_keeps_the_old_file_and_removes_its_temporary(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(ValueError, match="halfway"), atomic_write(target) as f:
        f.write(b"partial")
        raise ValueError("halfway")
    with pytest.raises(SepnetError) as error, atomic_write(target, label="table 'out.bin'", fix="free disk space") as f:
        f.write(b"partial")
        raise OSError(28, "No space left on device")
    assert str(error.value).startswith("cannot write table 'out.bin' (disk full: ")
    assert str(error.value).endswith(f" free on the disk holding '{tmp_path}'); free disk space")
    assert target.read_bytes() == b"old" and os.listdir(tmp_path) == ["out.bin"]


def test_an_unwritable_place_is_one_line_naming_the_folder(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(SepnetError) as error:
        write_text(blocker / "x.md", "text", fix="choose another output folder")
    message = str(error.value)
    assert message.startswith(f"cannot create folder '{blocker}' (") and message.endswith("; choose another output folder")


def test_stale_temporaries_go_only_when_asked(tmp_path):
    target = tmp_path / "last.ckpt"
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], check=True, capture_output=True, text=True)
    left = temp_path_for(target).with_name(f".last.ckpt.{int(gone.stdout)}-0badcafe.tmp")  # its writer was killed
    left.write_bytes(b"killed write")
    write_text(target, "one")
    assert stale_temp_files(target) == [left]
    with atomic_write(target, remove_stale=True) as f:
        f.write(b"two")
    assert stale_temp_files(target) == [] and target.read_text() == "two"

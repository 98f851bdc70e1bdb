"""check_writable_dir: an output folder that cannot be used is refused up front, in one line naming the flag."""

import os
import sys

import pytest

from library.errors import UserError
from library.writable import check_writable_dir


def test_creates_the_folder_and_leaves_no_probe(tmp_path):
    folder = check_writable_dir(tmp_path / "a" / "b", "--outdir")
    assert folder.is_dir() and list(folder.iterdir()) == []


def test_a_path_under_a_regular_file_names_the_file(tmp_path):
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(UserError, match=r"--output_dir .*file.txt/out: cannot create the folder, .*file.txt is a file"):
        check_writable_dir(tmp_path / "file.txt" / "out", "--output_dir")


def test_an_existing_file_is_not_a_folder(tmp_path):
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(UserError, match="--outdir .*file.txt: exists and is a file"):
        check_writable_dir(tmp_path / "file.txt", "--outdir")


def test_empty_path(tmp_path):
    with pytest.raises(UserError, match="--outdir is empty"):
        check_writable_dir("", "--outdir")


@pytest.mark.skipif(sys.platform == "win32" or os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_folder(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(UserError, match="--outdir .*ro: the folder is not writable"):
            check_writable_dir(folder, "--outdir")
    finally:
        folder.chmod(0o755)

"""Security rules that must stay true: no shell=True, no escaping output paths, no unpickling."""

import subprocess
import sys
from pathlib import Path

import pytest

from harness.errors import InputError
from harness.paths import safe_output_path

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("relative", ["../outside.json", "/etc/passwd", "a/../../b.json"])
def test_an_output_path_cannot_escape_its_directory(tmp_path, relative):
    with pytest.raises(InputError, match="expected an output path inside"):
        safe_output_path(tmp_path / "out", relative)


def test_a_symlink_out_of_the_directory_is_refused(tmp_path):
    base = tmp_path / "out"
    base.mkdir()
    (base / "link").symlink_to(tmp_path)
    with pytest.raises(InputError):
        safe_output_path(base, "link/x.json")


def test_a_path_inside_is_kept(tmp_path):
    assert safe_output_path(tmp_path, "runs/a.json") == (tmp_path / "runs" / "a.json").resolve()


def test_ruff_refuses_shell_true_with_the_project_config(tmp_path):
    """S602/S604 are selected in pyproject.toml; prove they fire, then that the tree is clean."""
    bad = tmp_path / "bad.py"
    bad.write_text("import subprocess\nsubprocess.run('ls', shell=True)\n")
    config = str(ROOT / "pyproject.toml")
    done = subprocess.run([sys.executable, "-m", "ruff", "check", "--config", config, "--no-cache",
                           str(bad)], capture_output=True, text=True, check=False)
    assert done.returncode == 1 and "S602" in done.stdout
    clean = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--select",
                            "S602,S604", "."], capture_output=True, text=True, cwd=ROOT, check=False)
    assert clean.returncode == 0, clean.stdout

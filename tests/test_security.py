"""Security rules that must stay true: no shell=True anywhere in the project."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


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

"""Output paths named in files (scenarios) stay inside the output directory.

A path typed on the command line is the user's own choice; one read from a scenario file
is not, so it may not climb out of the directory the run writes to.
"""

from __future__ import annotations

from pathlib import Path

from harness.errors import InputError


def safe_output_path(base: Path, relative: str | Path) -> Path:
    """``base / relative``, resolved; refused if it leaves ``base`` (``..``, absolute, symlink)."""
    root = Path(base).resolve()
    candidate = (root / relative).resolve()
    if not candidate.is_relative_to(root):
        raise InputError(f"expected an output path inside {root}, got {str(relative)!r}, "
                         f"which resolves to {candidate}")
    return candidate

"""Run history in SQLite: every `run` is recorded, to be listed and compared later.

The database is one file (stdlib sqlite3, nothing to install or serve). Its schema is
versioned with PRAGMA user_version and upgraded by ordered migrations, each in its own
transaction; a run is written in one transaction, so a crash mid-write leaves no half run.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from harness.core.errors import InputError
from harness.core.results import models_of, wrong_answers
from harness.core.targets import DEFAULT_MODE
from harness.io.jsonio import json_safe
from harness.io.sources import as_results

ENV_VAR = "LSTM_HARNESS_DB"

# One entry per schema version; entry i upgrades version i to i + 1. Never edit a released
# entry: append a new one, so every existing database can still be brought up to date.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE runs (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            created_at TEXT NOT NULL,
            git_commit TEXT,
            device TEXT,
            device_name TEXT,
            scenario TEXT,
            summary TEXT NOT NULL,
            failed INTEGER NOT NULL,
            results_schema_version INTEGER NOT NULL,
            meta TEXT NOT NULL  -- every top-level results key but rows and checks, as JSON
        )""",
        """CREATE TABLE rows (
            run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
            idx INTEGER NOT NULL,
            backend TEXT NOT NULL, device TEXT NOT NULL, dtype TEXT NOT NULL,
            batch_size INTEGER NOT NULL, seq_len INTEGER NOT NULL, mode TEXT NOT NULL,
            status TEXT NOT NULL, median_ms REAL, agrees INTEGER,
            data TEXT NOT NULL,  -- the whole row as JSON, samples_ms held in `samples`
            PRIMARY KEY (run_id, idx)
        )""",
        """CREATE TABLE samples (
            run_id INTEGER NOT NULL, row_idx INTEGER NOT NULL, i INTEGER NOT NULL,
            ms REAL NOT NULL,
            PRIMARY KEY (run_id, row_idx, i),
            FOREIGN KEY (run_id, row_idx) REFERENCES rows(run_id, idx) ON DELETE CASCADE
        ) WITHOUT ROWID""",
        """CREATE TABLE checks (
            run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
            idx INTEGER NOT NULL, data TEXT NOT NULL,
            PRIMARY KEY (run_id, idx)
        )""",
        "CREATE INDEX rows_key ON rows (backend, device, dtype, batch_size, seq_len, mode)",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)


@dataclass(frozen=True)
class RunInfo:
    id: int
    created_at: str
    git_commit: str | None
    device: str | None
    summary: str
    failed: bool


def default_db_path() -> Path:
    """$LSTM_HARNESS_DB, else the user's data directory (XDG), like other per-user state."""
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR])
    data_home = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(data_home) / "lstm-harness" / "history.sqlite"


@contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _refuse_newer(version: int) -> None:
    if version > SCHEMA_VERSION:
        raise InputError(f"expected a history database at schema version <= {SCHEMA_VERSION}, "
                         f"got version {version}; it was written by a newer lstm-harness")


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the schema up to SCHEMA_VERSION; returns the version found before."""
    found = conn.execute("PRAGMA user_version").fetchone()[0]
    _refuse_newer(found)
    for version in range(found, SCHEMA_VERSION):
        with _transaction(conn):
            for statement in MIGRATIONS[version]:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {version + 1}")
    return found


def _empty(path: Path) -> bool:
    """Whether ``path`` is an empty file: a database no run has been written to yet."""
    return Path(path).is_file() and Path(path).stat().st_size == 0


def _has_runs(path: Path) -> bool:
    """Whether a history database may be read for runs: InputError for another program's or a
    newer one, False for an empty file, which reading leaves as it is (opening it to write
    would lay the schema down)."""
    check_history(path)
    return not _empty(path)


def check_history(path: Path) -> None:
    """Refuse, without writing to it, a file that is not an lstm-harness history database
    this version can record into (absent or empty: it will be created)."""
    path = Path(path)
    if not path.is_file() or _empty(path):
        return
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise InputError(f"cannot open the history database {path}: {exc}") from exc
    try:
        found = conn.execute("PRAGMA user_version").fetchone()[0]
        tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.DatabaseError as exc:
        raise InputError(f"expected an lstm-harness history database at {path}: {exc}") from None
    finally:
        conn.close()
    _refuse_newer(found)
    if tables and "runs" not in tables:
        raise InputError(f"expected an lstm-harness history database at {path}, got an SQLite "
                         f"database of other tables ({', '.join(sorted(tables))})")


@contextmanager
def connect(path: Path) -> Iterator[sqlite3.Connection]:
    """An open, migrated database; autocommit off the hook, transactions explicit."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, isolation_level=None)
    except (OSError, sqlite3.Error) as exc:
        raise InputError(f"cannot open the history database {path}: {exc}") from exc
    try:
        conn.execute("PRAGMA foreign_keys = ON")
        migrate(conn)
        yield conn
    except sqlite3.DatabaseError as exc:
        raise InputError(f"expected an lstm-harness history database at {path}: {exc}") from exc
    finally:
        conn.close()


def summarize(result: dict) -> str:
    """One line: scenario, model(s), backends, shapes, and whether everything agreed."""
    rows = result.get("rows", [])
    backends = list(dict.fromkeys(r["backend"] for r in rows))
    batches = sorted({r["batch_size"] for r in rows})
    seqs = sorted({r["seq_len"] for r in rows})
    bad = sorted({backend for backend, _, _ in wrong_answers(result)})
    verdict = "all agree" if not bad else f"FAILED: {', '.join(bad)}"
    scenario = (result.get("scenario") or {}).get("name", "?")
    models = models_of(result)
    model = f"{len(models)} models" if len(models) > 1 else \
        next((m["label"] for m in models if m.get("label")), None)
    return (f"{scenario}{f' · {model}' if model else ''} · {','.join(backends)} · batch "
            f"{','.join(map(str, batches))} · seq {','.join(map(str, seqs))} · {verdict}")


def record(path: Path, result: dict) -> int:
    """Store one run (environment, scenario, every row, every raw sample); returns its id."""
    result = json_safe(result)
    env = result.get("environment") or {}
    meta = {k: v for k, v in result.items() if k not in ("rows", "checks")}
    failed = bool(wrong_answers(result))
    with connect(path) as conn, _transaction(conn):
        run_id = conn.execute(
            "INSERT INTO runs (created_at, git_commit, device, device_name, scenario, summary, "
            "failed, results_schema_version, meta) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (env.get("timestamp") or "", env.get("git_commit"), env.get("device"),
             env.get("device_name"), (result.get("scenario") or {}).get("name"),
             summarize(result), int(failed), result["schema_version"], json.dumps(meta)),
        ).lastrowid
        for idx, row in enumerate(result["rows"]):
            conn.execute(
                "INSERT INTO rows VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (run_id, idx, row["backend"], row["device"], row["dtype"], row["batch_size"],
                 row["seq_len"], row.get("mode", DEFAULT_MODE), row.get("status", "ok"),
                 row.get("median_ms"), None if row.get("agrees") is None else int(row["agrees"]),
                 json.dumps({**row, "samples_ms": None})))
            conn.executemany("INSERT INTO samples VALUES (?, ?, ?, ?)",
                             [(run_id, idx, i, ms) for i, ms in enumerate(row.get("samples_ms") or [])])
        conn.executemany("INSERT INTO checks VALUES (?, ?, ?)",
                         [(run_id, i, json.dumps(c)) for i, c in enumerate(result.get("checks", []))])
    return run_id


def list_runs(path: Path, limit: int | None = None) -> list[RunInfo]:
    """Most recent first."""
    if not _has_runs(path):
        return []
    with connect(path) as conn:
        found = conn.execute("SELECT id, created_at, git_commit, device, summary, failed FROM runs "
                             "ORDER BY id DESC LIMIT ?", (-1 if limit is None else limit,)).fetchall()
    return [RunInfo(i, created, commit, device, summary, bool(failed))
            for i, created, commit, device, summary, failed in found]


def _decoded(text: str) -> object:
    """A stored record, its NaN and Infinity (which runs recorded before they were written as
    null hold) read as null, as they are written now."""
    return json.loads(text, parse_constant=lambda _: None)


def load(path: Path, run_id: int) -> dict:
    """The results dict of one recorded run, as `run --out` would have written it."""
    missing = InputError(f"expected a run id from `harness history` ({path}), got {run_id}: "
                         "no such run")
    if not _has_runs(path):
        raise missing
    with connect(path) as conn:
        found = conn.execute("SELECT meta FROM runs WHERE id = ?", (run_id,)).fetchone()
        if found is None:
            raise missing
        rows = []
        for idx, data in conn.execute("SELECT idx, data FROM rows WHERE run_id = ? ORDER BY idx",
                                      (run_id,)).fetchall():
            row = _decoded(data)
            row["samples_ms"] = [ms for (ms,) in conn.execute(
                "SELECT ms FROM samples WHERE run_id = ? AND row_idx = ? ORDER BY i", (run_id, idx))]
            rows.append(row)
        checks = [_decoded(d) for (d,) in conn.execute(
            "SELECT data FROM checks WHERE run_id = ? ORDER BY idx", (run_id,))]
    meta = _decoded(found[0])
    return as_results({**meta, "rows": rows, "checks": checks}, f"run {run_id} of {path}")

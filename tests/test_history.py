"""The SQLite history: migration from nothing, exact round trip, transactional writes."""

from __future__ import annotations

import sqlite3

import pytest

from harness.core.errors import InputError
from harness.io import history
from tests.results_fixture import make_results


def test_an_empty_database_is_migrated_to_the_current_schema(tmp_path):
    db = tmp_path / "h.sqlite"
    sqlite3.connect(db).close()  # an empty file, version 0
    with history.connect(db) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == history.SCHEMA_VERSION
        tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        # a second open finds nothing to do
        assert history.migrate(conn) == history.SCHEMA_VERSION
    assert {"runs", "rows", "samples", "checks"} <= tables
    assert history.list_runs(db) == []


def test_a_recorded_run_comes_back_exactly_with_its_raw_samples(tmp_path):
    db = tmp_path / "h.sqlite"
    data = make_results(rollout=True)
    run_id = history.record(db, data)
    again = history.load(db, run_id)
    assert again == data
    assert len(again["rows"][0]["samples_ms"]) == 30
    with history.connect(db) as conn:
        n = conn.execute("SELECT COUNT(*) FROM samples WHERE run_id = ?", (run_id,)).fetchone()[0]
    assert n == sum(len(r["samples_ms"]) for r in data["rows"])


def test_runs_are_listed_newest_first_with_a_summary(tmp_path):
    db = tmp_path / "h.sqlite"
    first = history.record(db, make_results())
    second = history.record(db, make_results(scale=1.1))
    runs = history.list_runs(db)
    assert [r.id for r in runs] == [second, first]
    assert runs[0].git_commit == "abc123" and runs[0].device == "cpu"
    # the fixture has a failed backend: the summary names it
    assert runs[0].failed and runs[0].summary.endswith("FAILED: broken")
    assert "eager,onnxruntime,torchscript,compile,broken" in runs[0].summary
    assert history.list_runs(db, limit=1)[0].id == second


def test_a_backend_wrong_only_at_a_shape_it_was_not_timed_at_fails_the_run(tmp_path):
    db = tmp_path / "h.sqlite"
    data = make_results()
    data["rows"] = [r for r in data["rows"] if r["backend"] != "broken"]
    data["checks"].append({**data["checks"][1], "seq_len": 200, "agrees": False})
    assert all(r.get("agrees") is not False for r in data["rows"])  # every row agrees
    history.record(db, data)
    (run,) = history.list_runs(db)
    assert run.failed and run.summary.endswith(f"FAILED: {data['checks'][1]['backend']}")


def test_a_crash_mid_write_leaves_no_half_run(tmp_path):
    db = tmp_path / "h.sqlite"
    kept = history.record(db, make_results())
    broken = make_results()
    del broken["rows"][3]["backend"]  # the write fails after the run and three rows went in
    with pytest.raises(KeyError):
        history.record(db, broken)
    with history.connect(db) as conn:
        assert conn.execute("SELECT COUNT(DISTINCT run_id) FROM rows").fetchone()[0] == 1
        assert conn.execute("SELECT COUNT(*) FROM samples WHERE run_id != ?", (kept,)).fetchone()[0] == 0
    assert [r.id for r in history.list_runs(db)] == [kept]


def test_a_newer_schema_or_a_foreign_file_is_refused(tmp_path):
    newer = tmp_path / "newer.sqlite"
    conn = sqlite3.connect(newer)
    conn.execute(f"PRAGMA user_version = {history.SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(InputError, match="written by a newer lstm-harness"):
        history.list_runs(newer)
    junk = tmp_path / "junk.sqlite"
    junk.write_text("not a database, just text " * 100)
    with pytest.raises(InputError, match="expected an lstm-harness history database"):
        history.list_runs(junk)


def test_reading_another_programs_database_is_refused_without_writing_to_it(tmp_path):
    foreign = tmp_path / "notes.sqlite"
    conn = sqlite3.connect(foreign)
    conn.execute("CREATE TABLE notes (text TEXT)")
    conn.commit()
    conn.close()
    before = foreign.read_bytes()
    for read in (history.list_runs, lambda db: history.load(db, 1)):
        with pytest.raises(InputError, match=r"got an SQLite database of other tables \(notes\)"):
            read(foreign)
    assert foreign.read_bytes() == before


def test_a_nan_stored_before_runs_were_recorded_json_safe_reads_as_null(tmp_path):
    db = tmp_path / "h.sqlite"
    run_id = history.record(db, make_results())
    conn = sqlite3.connect(db)
    conn.execute("UPDATE checks SET data = replace(data, '\"max_abs_err\": ', '\"max_abs_err\": NaN, "
                 "\"was\": ') WHERE run_id = ? AND idx = 0", (run_id,))
    conn.commit()
    conn.close()
    assert history.load(db, run_id)["checks"][0]["max_abs_err"] is None


def test_an_unknown_run_id_names_what_was_expected(tmp_path):
    db = tmp_path / "h.sqlite"
    history.record(db, make_results())
    with pytest.raises(InputError, match="expected a run id from `harness history`.*got 7"):
        history.load(db, 7)


def test_reading_an_empty_file_lists_no_runs_and_leaves_it_empty(tmp_path):
    db = tmp_path / "h.sqlite"
    db.touch()
    assert history.list_runs(db) == []
    with pytest.raises(InputError, match="got 1: no such run"):
        history.load(db, 1)
    assert db.stat().st_size == 0  # nothing was written: reading lays no schema down
    history.record(db, make_results())  # recording into it does
    assert [run.id for run in history.list_runs(db)] == [1]


def test_the_default_path_honours_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv(history.ENV_VAR)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert history.default_db_path() == tmp_path / "lstm-harness" / "history.sqlite"
    monkeypatch.setenv(history.ENV_VAR, str(tmp_path / "x.sqlite"))
    assert history.default_db_path() == tmp_path / "x.sqlite"

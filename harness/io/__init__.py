"""Results in and out: JSON files, the SQLite history, and other tools' files read as results."""

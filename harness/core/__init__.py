"""The core layer: errors, the model and its data, results, statistics, agreement and timing.

It imports nothing above it (no backend, engine, report or CLI code)."""

"""The engine layer: planning, the runner, handles and process isolation.

It drives backends through workloads; it renders nothing and parses no command line."""

"""The command line: parsing, the live progress display, and turning errors into exit codes."""

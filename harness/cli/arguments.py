"""Argument parsing that refuses bad input in one line, shared by every command line of
the project (the harness's and its tools')."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from pathlib import Path

from harness.core.errors import InputError


class OneLineParser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so every bad input takes one path."""

    def error(self, message: str) -> None:
        raise InputError(message)


def int_at_least(flag: str, minimum: int, maximum: int | None = None) -> Callable[[str], int]:
    """An integer >= ``minimum`` (and <= ``maximum`` where given), refused in one line otherwise."""
    bound = f">= {minimum}" if maximum is None else f"from {minimum} to {maximum}"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} expects an integer {bound}, "
                                             f"got {text!r}") from None
        if value < minimum or (maximum is not None and value > maximum):
            raise argparse.ArgumentTypeError(f"{flag} expects an integer {bound}, got {value}")
        return value
    return parse


def number(flag: str, at_least: float | None = None,
           at_most: float | None = None) -> Callable[[str], float]:
    """A finite number > 0 (>= ``at_least``, <= ``at_most`` where given), refused in one line
    otherwise."""
    bound = ("> 0" if at_least is None else f">= {at_least:g}") + \
        ("" if at_most is None else f" and <= {at_most:g}")

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} expects a number, got {text!r}") from None
        if not math.isfinite(value) or not (value > 0 if at_least is None else value >= at_least) \
                or (at_most is not None and value > at_most):
            raise argparse.ArgumentTypeError(f"{flag} expects a number {bound}, got {text}")
        return value
    return parse


def path_arg(flag: str, kind: str = "file") -> Callable[[str], Path]:
    """A path; an empty one names nothing (as a Path it would mean the current folder)."""

    def parse(text: str) -> Path:
        if not text.strip():
            raise argparse.ArgumentTypeError(f"{flag} expects a path to a {kind}, got {text!r}")
        return Path(text)
    return parse

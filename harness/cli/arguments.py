"""Argument parsing that refuses bad input in one line, shared by every command line of
the project (the harness's and its tools')."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

from harness.core.errors import InputError


class OneLineParser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so every bad input takes one path."""

    def error(self, message: str) -> None:
        raise InputError(message)


def int_at_least(flag: str, minimum: int) -> Callable[[str], int]:
    """An integer >= ``minimum``, refused in one line otherwise."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} expects an integer >= {minimum}, "
                                             f"got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{flag} expects an integer >= {minimum}, got {value}")
        return value
    return parse


def number(flag: str, at_least: float | None = None) -> Callable[[str], float]:
    """A finite number > 0 (>= ``at_least`` where given), refused in one line otherwise."""
    bound = "> 0" if at_least is None else f">= {at_least:g}"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} expects a number, got {text!r}") from None
        if not math.isfinite(value) or not (value > 0 if at_least is None else value >= at_least):
            raise argparse.ArgumentTypeError(f"{flag} expects a number {bound}, got {text}")
        return value
    return parse

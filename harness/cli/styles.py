"""How the command line marks its messages. Its consoles read no markup (paths, process names
and install lines such as ``'.[cpu]'`` would be taken for style tags), so a styled label
is a Text."""

from __future__ import annotations

from rich.text import Text


def labelled(label: str, style: str, message: str) -> Text:
    """``label`` in ``style``, then ``message`` as it is."""
    return Text.assemble((label, style), " ", message)

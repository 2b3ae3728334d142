"""Keeping user-supplied text from steering the terminal.

Names, paths and messages that come from scenario files, variant files or the
command line are printed in reports and errors; a newline in them would split
a one-line error, an escape sequence would reach the terminal raw.  Both are
shown the way ``repr`` shows them.
"""

from __future__ import annotations


def _escaped(c: str) -> str:
    return repr(c)[1:-1] if c != "'" else c


def one_line(text: str) -> str:
    """``text`` with newlines and every other control character escaped."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else _escaped(c) for c in text)


def terminal_safe(text: str) -> str:
    """``text`` keeping its line breaks, every other control character escaped."""
    return "\n".join(one_line(line) for line in text.split("\n"))

"""Reports of a check: text (oops-like header, interleaving, replay command) and JSON."""

from .json import to_json
from .text import ok_report, replay_command, summary_row, violation_report

__all__ = ["ok_report", "replay_command", "summary_row", "to_json", "violation_report"]

"""``tdpmmu sweep``: every small scenario, generated from the scenario format's
op table, run with the default strategy, findings grouped by signature.

:mod:`.vocabulary` turns the op table and a VM into the actions a thread may
run; :mod:`.generate` builds the scenarios of a scope (with the symmetry
reduction and the format's own validation); :mod:`.run` runs them and groups
what they find; :mod:`.toml` writes a scenario back as a file.
"""

from .generate import Generated, Scope, generate
from .run import Finding, SweepResult, run_sweep
from .vocabulary import DEFAULT_VM, load_vm

__all__ = ["DEFAULT_VM", "Finding", "Generated", "Scope", "SweepResult", "generate",
           "load_vm", "run_sweep"]

"""What a run is judged by, beyond the kernel's own BUG/WARN/KASAN/lockdep reports.

Each property watches the model through tracepoints (``kvm.probes``), a
per-step invariant, or a final check after teardown.  A broken property is
reported with :func:`tdpmmu.engine.report` and the run goes on: if the kernel
itself fails later, the report shows that failure with the property as its
root cause; otherwise the property is the finding.
"""

from __future__ import annotations

from typing import Any

from .dirty_log import DirtyLogComplete
from .invalidation import InvalidationComplete
from .leak import check_no_leak
from .root_list import NoZeroCountRoot

ALL = ("no-zero-count-root", "invalidation-complete", "dirty-log-complete", "no-leak")


class Properties:
    """The properties of one execution, attached to its VM."""

    def __init__(self, kvm: Any) -> None:
        self.root_list = NoZeroCountRoot(kvm)
        self.invalidation = InvalidationComplete(kvm)
        self.dirty_log = DirtyLogComplete(kvm)
        kvm.probes.extend([self.invalidation.probe, self.dirty_log.probe])

    def invariant(self, kvm: Any) -> tuple[Any, ...]:
        """Checked between steps; returns what it read (see ``Execution._check_invariant``)."""
        return self.root_list.check()

    def final(self, kvm: Any) -> None:
        """Checked after the VM is torn down."""
        check_no_leak(kvm)


__all__ = ["ALL", "DirtyLogComplete", "InvalidationComplete", "NoZeroCountRoot", "Properties",
           "check_no_leak"]

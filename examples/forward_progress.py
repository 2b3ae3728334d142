"""A kernel variant: Linux 5.12's "KVM: x86/mmu: Ensure forward progress when
yielding in TDP MMU iter" (ed5e484b79e8) on top of v5.11.

Run it as a user would run their own patch:

    tdpmmu check --kernel examples/forward_progress.py --scenario dirty-log-new-root

v5.10 and v5.11 restart a walk from the root after every yield and may yield
again at the same SPTE, so two threads can keep each other from progressing
forever (``tdpmmu check --kernel v5.11 --scenario dirty-log-new-root --knob
resched=always`` shows the livelock).  The patch yields only once the walk has
moved past the SPTE it last yielded at.

The model's tdp_iter still names the target gfn ``goal_gfn`` (5.12 renamed it
``next_last_level_gfn``) and keeps the last yield target in ``yielded_at``
(5.12's ``yielded_gfn``, set when the walk restarts).  The model's default
``resched`` policy makes the same assumption; this variant makes need_resched()
always true, so that the guarantee comes from the patch alone.
"""

from tdpmmu.kernel import cond_resched_lock
from tdpmmu.kvm.tdp_iter import tdp_iter_refresh_walk
from tdpmmu.kvm.versions import V5_11


class ForwardProgress(V5_11):
    name = "v5.11+forward-progress"
    summary = "v5.11 with 5.12's forward-progress guarantee for yielding walks"

    def need_resched(self, kvm, it):
        """``need_resched() || spin_needbreak()``: always, as ``resched=always``;
        forward progress now comes from the patch, not from the model."""
        return True

    def tdp_mmu_iter_flush_cond_resched(self, kvm, it):
        # Ensure forward progress has been made before yielding.
        if it.yielded_at == it.goal_gfn:
            return True
        if self.need_resched(kvm, it):
            self.kvm_flush_remote_tlbs(kvm)
            cond_resched_lock(kvm.mmu_lock)
            tdp_iter_refresh_walk(it)
            it.yielded_at = it.goal_gfn
            return False
        return True

    def tdp_mmu_iter_cond_resched(self, kvm, it):
        # Ensure forward progress has been made before yielding.
        if it.yielded_at == it.goal_gfn:
            return
        if self.need_resched(kvm, it):
            cond_resched_lock(kvm.mmu_lock)
            tdp_iter_refresh_walk(it)
            it.yielded_at = it.goal_gfn

"""refcount_t and atomic_t: lib/refcount.c's warnings, atomicity under DPOR."""

from __future__ import annotations

from types import SimpleNamespace

from tdpmmu.engine import Var, cpu_relax, explore
from tdpmmu.kernel import (
    READ_ONCE,
    REFCOUNT_SATURATED,
    WRITE_ONCE,
    atomic_dec_and_test,
    atomic_inc,
    atomic_read,
    atomic_t,
    cmpxchg,
    refcount_dec,
    refcount_dec_and_test,
    refcount_inc,
    refcount_inc_not_zero,
    refcount_read,
    refcount_set,
    refcount_t,
    set_panic_on_warn,
    xchg,
)


def setup() -> SimpleNamespace:
    return SimpleNamespace(count=refcount_t(1, "root_count"), out=[])


def kvm_mmu_get_root(s: SimpleNamespace) -> None:
    refcount_inc(s.count)


def kvm_mmu_put_root(s: SimpleNamespace) -> bool:
    return refcount_dec_and_test(s.count)


def test_refcount_inc_from_zero_warns() -> None:
    def thread(s: SimpleNamespace) -> None:
        kvm_mmu_put_root(s)
        kvm_mmu_get_root(s)

    v = explore(setup, [thread]).violation
    assert v is not None and v.kind == "WARN"
    assert v.message == "refcount_t: addition on 0; use-after-free."
    assert v.function == "kvm_mmu_get_root"
    assert v.details[0] == "WARNING: CPU: thread at lib/refcount.c: refcount_warn_saturate"


def test_refcount_underflow_warns() -> None:
    def thread(s: SimpleNamespace) -> None:
        s.out.append(kvm_mmu_put_root(s))
        s.out.append(kvm_mmu_put_root(s))

    v = explore(setup, [thread]).violation
    assert v is not None and v.kind == "WARN"
    assert v.message == "refcount_t: underflow; use-after-free."
    assert v.function == "kvm_mmu_put_root"


def test_refcount_dec_to_zero_warns_leak() -> None:
    v = explore(setup, [lambda s: refcount_dec(s.count)]).violation
    assert v is not None and v.message == "refcount_t: decrement hit 0; leaking memory."


def test_saturation_when_warnings_are_soft() -> None:
    def thread(s: SimpleNamespace) -> None:
        set_panic_on_warn(False)
        refcount_set(s.count, 0)
        refcount_inc(s.count)
        s.out.append(refcount_read(s.count))
        refcount_inc(s.count)  # saturated: another kind of warning
        s.out.append(refcount_read(s.count))

    outs = []
    res = explore(setup, [thread], check=lambda s: outs.append(list(s.out)))
    assert outs[0] == [REFCOUNT_SATURATED, REFCOUNT_SATURATED]
    assert res.violation is not None and res.violation.message.startswith("refcount_t: addition")


def test_inc_not_zero_and_dec_and_test() -> None:
    def thread(s: SimpleNamespace) -> None:
        s.out.append(refcount_inc_not_zero(s.count))  # 1 -> 2
        s.out.append(refcount_dec_and_test(s.count))  # 2 -> 1
        s.out.append(refcount_dec_and_test(s.count))  # 1 -> 0
        s.out.append(refcount_inc_not_zero(s.count))  # stays 0
        s.out.append(refcount_read(s.count))

    outs = []
    assert explore(setup, [thread], check=lambda s: outs.append(s.out)).ok
    assert outs[0] == [True, False, True, False, 0]


def test_get_after_last_put_race_found_by_dpor() -> None:
    # The v5.10 shape: a thread that took no reference races with the last put.
    def getter(s: SimpleNamespace) -> None:
        kvm_mmu_get_root(s)
        kvm_mmu_put_root(s)

    def putter(s: SimpleNamespace) -> None:
        kvm_mmu_put_root(s)

    v = explore(setup, [getter, putter], strategy="dpor").violation
    assert v is not None and v.message == "refcount_t: addition on 0; use-after-free."
    assert v.thread == "getter"


def test_inc_not_zero_closes_the_race() -> None:
    def getter(s: SimpleNamespace) -> None:
        if refcount_inc_not_zero(s.count):
            kvm_mmu_put_root(s)

    def putter(s: SimpleNamespace) -> None:
        kvm_mmu_put_root(s)

    res = explore(setup, [getter, putter], strategy="dpor")
    assert res.ok and res.complete


def test_atomic_inc_is_atomic_but_read_once_write_once_is_not() -> None:
    def setup2() -> SimpleNamespace:
        return SimpleNamespace(v=atomic_t(0, "v"), w=Var(0, "w"))

    def atomic_incs(s: SimpleNamespace) -> None:
        atomic_inc(s.v)

    def plain_incs(s: SimpleNamespace) -> None:
        WRITE_ONCE(s.w, READ_ONCE(s.w) + 1)

    def check(s: SimpleNamespace) -> None:
        assert atomic_read(s.v) in (0, 2)
        assert s.w.value in (0, 2), f"lost update: w={s.w.value}"

    assert explore(setup2, [atomic_incs, atomic_incs], strategy="dpor", check=check).ok
    v = explore(setup2, [plain_incs, plain_incs], strategy="dpor", check=check).violation
    assert v is not None and v.message.startswith("lost update: w=1")


def test_cmpxchg_xchg_and_dec_and_test() -> None:
    def thread(s: SimpleNamespace) -> None:
        s.out.append(cmpxchg(s.w, 0, 5))
        s.out.append(cmpxchg(s.w, 0, 7))
        s.out.append(xchg(s.w, 9))
        s.out.append(READ_ONCE(s.w))
        s.out.append(atomic_dec_and_test(s.v))

    def setup2() -> SimpleNamespace:
        return SimpleNamespace(v=atomic_t(1), w=Var(0, "w"), out=[])

    outs = []
    assert explore(setup2, [thread], check=lambda s: outs.append(s.out)).ok
    assert outs[0] == [0, 5, 5, 9, True]


def test_cmpxchg_spin_loop_blocks_until_written() -> None:
    # A lock built from cmpxchg: spin with cpu_relax until the owner stores 0.
    def setup2() -> SimpleNamespace:
        return SimpleNamespace(word=Var(0, "word"), inside=Var(0, "inside"), bad=False)

    def locker(s: SimpleNamespace) -> None:
        while cmpxchg(s.word, 0, 1) != 0:
            cpu_relax()
        n = READ_ONCE(s.inside)
        if n:
            s.bad = True
        WRITE_ONCE(s.inside, n + 1)
        WRITE_ONCE(s.inside, n)
        WRITE_ONCE(s.word, 0)

    bads = []
    res = explore(setup2, [locker, locker], strategy="dpor", check=lambda s: bads.append(s.bad))
    assert res.ok and res.complete and not any(bads)

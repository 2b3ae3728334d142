"""A poisoned list pointer faults on any dereference, not only through the helpers."""

from __future__ import annotations

import pytest

from tdpmmu.engine import Finding
from tdpmmu.kernel import LIST_HEAD, LIST_POISON1, LIST_POISON2, list_add, list_del, list_head


class Entry:
    def __init__(self) -> None:
        self.link = list_head(self)


def deleted() -> Entry:
    head = LIST_HEAD("head")
    e = Entry()
    list_add(e.link, head)
    list_del(e.link)
    return e


def raw_next_next(e: Entry) -> object:
    return e.link.next.next  # what C's entry->next->next does


def test_a_raw_read_through_a_poisoned_pointer_is_the_gpf_list_next_entry_reports():
    e = deleted()
    with pytest.raises(Finding) as exc:
        raw_next_next(e)
    f = exc.value
    assert f.kind == "GPF"
    assert f"{LIST_POISON1:#x}" in f.message and "general protection fault" in f.message
    assert f.function == "raw_next_next"


def test_a_raw_write_through_a_poisoned_pointer_faults_too():
    e = deleted()
    with pytest.raises(Finding) as exc:
        e.link.prev.next = e.link
    assert exc.value.kind == "GPF" and f"{LIST_POISON2:#x}" in exc.value.message


def test_the_poison_values_still_compare_and_print_as_the_kernel_constants():
    e = deleted()
    assert e.link.next == 0xDEAD000000000100 and e.link.prev == 0xDEAD000000000122
    assert isinstance(e.link.next, int) and f"{e.link.next:#x}" == "0xdead000000000100"

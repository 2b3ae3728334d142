"""A ``list_head`` of a zero-filled allocation: NULL until it is added."""

from __future__ import annotations

import pytest

from tdpmmu.engine import Finding
from tdpmmu.kernel import LIST_HEAD, list_add, list_del
from tdpmmu.kernel.list import zeroed_list_head


class page:
    def __init__(self) -> None:
        self.link = zeroed_list_head(self)


def test_deleting_a_node_never_added_dereferences_null() -> None:
    p = page()
    with pytest.raises(Finding) as exc:
        list_del(p.link)
    assert exc.value.message == ("BUG: kernel NULL pointer dereference, address: "
                                 "0000000000000000")


def test_a_zeroed_node_added_then_deleted_is_an_ordinary_node() -> None:
    head = LIST_HEAD("tdp_mmu_pages")
    p = page()
    list_add(p.link, head)
    assert head.next is p.link and p.link.next is head
    list_del(p.link)
    assert head.next is head and head.prev is head

"""overlaps(a, b): some packet matches both policies; first_conflict finds such a pair at one priority."""

from __future__ import annotations

import ipaddress
import itertools

import pytest
from hypothesis import given, settings, strategies as st

from taprouter.policy.checks import first_conflict
from taprouter.policy.model import overlaps, parse

OWN = frozenset({ipaddress.ip_address("10.0.1.1")})


def p(name="a", **fields):
    return parse("r1", name, {"action": "drop", **fields})


@pytest.mark.parametrize("a, b, expected", [
    ({}, {}, True),
    ({"dst": "10.0.0.0/8"}, {"dst": "10.1.0.0/16"}, True),
    ({"dst": "10.0.0.0/16"}, {"dst": "10.1.0.0/16"}, False),
    ({"src": "10.0.0.0/8"}, {"dst": "10.1.0.0/16"}, True),
    ({"dst": "10.0.0.0/8"}, {"dst": "2001:db8::/32"}, False),  # IPv4 against IPv6
    ({"src": "10.0.0.0/8"}, {"proto": "icmpv6"}, False),  # icmpv6 is IPv6 only
    ({"in_port": "1,2"}, {"in_port": "2,3"}, True),
    ({"in_port": "1"}, {"in_port": "2"}, False),
    ({"in_port": "1"}, {}, True),
    ({"proto": "tcp"}, {"proto": "udp"}, False),
    ({"proto": "tcp", "dport": "80-443"}, {"proto": "tcp", "dport": "443-8080"}, True),
    ({"proto": "tcp", "dport": "80-442"}, {"proto": "tcp", "dport": "443-8080"}, False),
    ({"proto": "tcp", "dport": "80"}, {"proto": "tcp", "sport": "80"}, True),
    ({"proto": "tcp", "dport": "80"}, {}, True),
    ({"proto": "icmp", "icmp_type": "8"}, {"proto": "icmp", "icmp_type": "0"}, False),
    ({"proto": "icmp", "icmp_type": "8"}, {"proto": "icmp"}, True),
    # A forward applies to its next hop's family only.
    ({"action": "forward", "via": "10.0.1.9"}, {"dst": "2001:db8::/32"}, False),
    ({"action": "forward", "via": "10.0.1.9"}, {"dst": "10.9.0.0/16"}, True),
    # The scope: where the matches meet only on the router's own address, a routed-only policy
    # cannot meet the other; two that both see the router's traffic do.
    ({"dst": "10.0.1.1/32", "to_router": True}, {"dst": "10.0.1.0/24"}, False),
    ({"dst": "10.0.1.1/32", "to_router": True}, {"dst": "10.0.1.0/24", "to_router": True}, True),
    ({"dst": "10.0.1.2/32", "to_router": True}, {"dst": "10.0.1.0/24"}, True),
    ({"dst": "10.0.1.0/24", "to_router": True}, {"dst": "10.0.1.0/24"}, True),
])
def test_overlaps(a, b, expected):
    pa, pb = p("a", **a), p("b", **b)
    assert overlaps(pa, pb, OWN) is expected
    assert overlaps(pb, pa, OWN) is expected


def test_first_conflict_only_at_one_priority():
    wide, narrow = p("wide", dst="10.0.0.0/8"), p("narrow", dst="10.1.2.0/24", priority="200")
    assert first_conflict([wide, narrow]) is None
    narrow_same = p("narrow", dst="10.1.2.0/24")
    assert {x.name for x in first_conflict([wide, narrow_same])} == {"wide", "narrow"}


# Small universes, so that random policies often meet: the index must find exactly the pairs that
# the exact test does, whichever fields are left out.
_field = {
    "dst": st.sampled_from([None, "10.0.0.0/8", "10.1.0.0/16", "10.2.0.0/16", "10.1.2.0/24", "10.0.1.1/32"]),
    "src": st.sampled_from([None, "192.168.0.0/16", "192.168.1.0/24", "192.168.2.0/24"]),
    "in_port": st.sampled_from([None, "1", "2", "1,2"]),
    "proto": st.sampled_from([None, "tcp", "udp"]),
    "to_router": st.booleans(),
}
_policy = st.fixed_dictionaries(_field)


@settings(max_examples=150, deadline=None)
@given(st.lists(_policy, min_size=2, max_size=12))
def test_first_conflict_agrees_with_every_pair(specs):
    policies = [p(f"p{i}", **{k: v for k, v in spec.items() if v is not None}) for i, spec in enumerate(specs)]
    brute = any(overlaps(a, b, OWN) for a, b in itertools.combinations(policies, 2))
    found = first_conflict(policies, OWN)
    assert (found is not None) is brute
    if found:
        assert overlaps(*found, OWN) and found[0] is not found[1]


def test_first_conflict_is_fast_on_many_disjoint_policies():
    """10,000 /32s at one priority: candidates come from the prefix index, not 50 million pairs."""
    policies = [p(f"p{i}", dst=f"10.{i // 256}.{i % 256}.7/32") for i in range(10_000)]
    policies.append(p("catch", src="192.168.0.0/16", dst="11.0.0.0/8"))
    assert first_conflict(policies) is None
    policies.append(p("clash", dst="10.3.0.0/16"))
    assert {x.name for x in first_conflict(policies)} == {"clash", "p768"}

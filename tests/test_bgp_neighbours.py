"""birdctl.bgp_neighbours: BGP neighbours' addresses from `show protocols all`, in BIRD 2's format."""

from taprouter.routing.birdctl import _LINE, bgp_neighbours

SHOW = """0001 BIRD 2.0.12 ready.
2002-Name       Proto      Table      State  Since         Info
1002-device1    Device     ---        up     22:21:47.513  
1006-
1002-peer3      BGP        ---        up     22:21:52.823  Established   
1006-  BGP state:          Established
     Neighbor address: 10.0.3.2
     Neighbor AS:      65003
     Local AS:         65000
1002-peer6      BGP        ---        start  22:21:52.823  Active
1006-  BGP state:          Active
     Neighbor address: fe80::2%eth0
     Neighbor AS:      65006
1002-ospf4      OSPF       master4    up     22:21:47.513  Running
1006-  Channel ipv4
0000 
"""


def parse(text: str) -> list[tuple[int, str]]:
    lines, code = [], 0
    for raw in text.splitlines()[1:]:
        m = _LINE.match(raw)
        if m is None:
            lines.append((code, raw[1:]))
        else:
            code = int(m.group(1))
            lines.append((code, m.group(3)))
    return lines


def test_each_bgp_protocols_neighbour():
    assert bgp_neighbours(parse(SHOW)) == frozenset({"10.0.3.2", "fe80::2"})


def test_no_bgp_no_neighbours():
    assert bgp_neighbours(parse(SHOW.split("1002-peer3")[0] + "0000 \n")) == frozenset()


def test_a_neighbour_range_cannot_be_known():
    dynamic = SHOW.replace("     Neighbor address: 10.0.3.2", "     Neighbor range:   10.0.3.0/24")
    assert bgp_neighbours(parse(dynamic)) is None

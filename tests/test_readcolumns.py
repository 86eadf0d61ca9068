"""readcolumns: a block of route flows decoded a column at a time reads exactly as entry by entry.

The reference is readback.decode_all with the column decoders taken away (the entry path, which
tests/test_readback.py checks against os-ken). Blocks are whole reply bodies of generated route
flows behind flow-stats heads with random durations, counters, timeouts and flags.
"""

from __future__ import annotations

import random

import pytest

from taprouter.controller.openflow import readback, readcolumns
from taprouter import prefix

from test_readback import GIDS, SEED, entry, random_prefix, route_flow

# (version, form, punted): the shapes a block decoder exists for (a /0 is one route: entries only).
SHAPES = [(v, form, punted) for v in (4, 6) for form in ("exact", "masked") for punted in (False, True)]


def entries_path(blocks, monkeypatch) -> tuple:
    with monkeypatch.context() as m:
        m.setattr(readback, "_COLUMNS", {})
        routes, flows, bad = readback.decode_all(blocks)
    return routes, flows, [b.data for b in bad]


def both_paths(blocks, monkeypatch) -> tuple:
    routes, flows, bad = readback.decode_all(blocks)
    return (routes, flows, [b.data for b in bad]), entries_path(blocks, monkeypatch)


def shape_entries(version: int, form: str, punted: bool, n: int, rng: random.Random) -> tuple[list[bytes], dict]:
    width = 32 if version == 4 else 128
    lengths = [width] if form == "exact" else list(range(1, width))  # /width is written exact
    routes = {}
    for _ in range(n):
        pk = random_prefix(rng, version, rng.choice(lengths))
        routes[pk] = 0 if punted else rng.choice([*GIDS, rng.randrange(1, 1 << 32)])
    return [entry(route_flow(pk, target), rng) for pk, target in routes.items()], routes


def decoder(data: bytes):
    """The block decoder readback.decode_all picks for this block by its first entry, if any."""
    length, table, _, _, _, match_len = readback._HEAD(data, 0)
    return readback._COLUMNS.get((table, match_len, length))


def test_there_is_a_block_decoder_for_every_shape_but_the_default_route():
    assert len(readback._COLUMNS) == len(SHAPES) == 8


@pytest.mark.parametrize("version,form,punted", SHAPES)
def test_a_block_of_one_shape_decodes_in_columns_as_entry_by_entry(version, form, punted, monkeypatch):
    rng = random.Random(SEED + version * 10 + (form == "exact") * 2 + punted)
    entries, routes = shape_entries(version, form, punted, 300, rng)
    data = b"".join(entries)
    keys, targets = decoder(data)(data)
    assert dict(zip(keys, targets)) == routes
    got, want = both_paths([readback.RawFlowStats(data)], monkeypatch)
    assert got == want and got[0] == routes and not got[1] and not got[2]


def test_a_full_table_block_of_slash_24s_as_a_switch_sends_it(monkeypatch):
    rng = random.Random(SEED + 40)
    entries = [entry(route_flow(prefix.pack(4, rng.getrandbits(24) << 8, 24), rng.randrange(1, 1000)), rng)
               for _ in range(744)]
    block = readback.RawFlowStats(b"".join(entries))
    assert decoder(block.data)(block.data) is not None
    got, want = both_paths([block], monkeypatch)
    assert got == want and len(got[0]) == len({readback.decode(e)[0] for e in entries})


@pytest.mark.parametrize("version,form,punted", SHAPES)
def test_any_byte_changed_in_any_entry_reads_as_entry_by_entry(version, form, punted, monkeypatch):
    """Every byte of an entry, flipped: the block decoder declines or agrees with the entry path."""
    rng = random.Random(SEED + 50 + version + (form == "exact") * 2 + punted)
    entries, _ = shape_entries(version, form, punted, 12, rng)
    stride = len(entries[0])
    declined = agreed = 0
    for at in range(stride):
        victim = rng.randrange(len(entries))
        changed = bytearray(entries[victim])
        changed[at] ^= 1 << rng.randrange(8)
        data = b"".join(entries[:victim] + [bytes(changed)] + entries[victim + 1:])
        got, want = both_paths([readback.RawFlowStats(data)], monkeypatch)
        assert got == want, (at, data.hex())
        columns = decoder(data)  # none when the first entry's head changed
        if columns is None or columns(data) is None:
            declined += 1
        else:
            agreed += 1
    # Bytes the entry path ignores (durations, counters, timeouts, flags, pads) are decoded in
    # columns all the same; those it checks make the block decoder decline.
    assert declined and agreed


def test_blocks_that_need_the_entry_path_decline_and_read_the_same(monkeypatch):
    rng = random.Random(SEED + 60)
    v4, _ = shape_entries(4, "masked", False, 20, rng)
    v4_punted, _ = shape_entries(4, "masked", True, 5, rng)
    v6, _ = shape_entries(6, "masked", False, 5, rng)
    host = entry(route_flow(prefix.pack(4, 0x0A000001, 32), 7), rng)
    default = entry(route_flow(prefix.pack(4, 0, 0), 7), rng)
    group0 = bytearray(v4[3])
    group0[-4:] = bytes(4)  # group 0 reads as the punt form: the entry path refuses it as a route
    cases = {
        "two shapes of one length's worth": v4[:10] + v4_punted,
        "a host route among /24s": v4[:10] + [host] + v4[10:],
        "a default route first": [default] + v4,
        "both families": v4 + v6,
        "group 0 in one": v4[:3] + [bytes(group0)] + v4[4:],
        "a cut last entry": v4[:-1] + [v4[-1][:40]],
    }
    for name, entries in cases.items():
        data = b"".join(entries)
        columns = decoder(data)
        assert columns is None or columns(data) is None, name
        got, want = both_paths([readback.RawFlowStats(data)], monkeypatch)
        assert got == want, name


def test_priority_and_mask_must_agree_and_host_bits_must_be_clear():
    rng = random.Random(SEED + 70)
    entries, _ = shape_entries(4, "masked", False, 8, rng)
    data = b"".join(entries)
    columns = decoder(data)
    assert columns(data) is not None
    stride = len(entries[0])
    # priority is at 12 in the head; the ipv4_dst value at 62 and its mask at 66
    for at, value in ((12, b"\x00\x09"), (12, b"\x00\x2b"), (66, b"\xff\xff\xff\xfe"), (65, b"\x01")):
        changed = bytearray(data)
        changed[stride * 5 + at:stride * 5 + at + len(value)] = value
        assert columns(bytes(changed)) is None, (at, value)


def test_fields_lays_out_a_big_endian_format():
    assert readcolumns.fields("!HBx8xH") == [(0, 2), (2, 1), (12, 2)]
    assert readcolumns.fields("!IH2xQ") == [(0, 4), (4, 2), (8, 8)]
    with pytest.raises(KeyError):
        readcolumns.fields("!Hs")

"""MAC addresses as the pipeline compares them (48-bit ints) and as people write them (text)."""

from __future__ import annotations


def mac_to_int(mac: str) -> int:
    return int(mac.replace(":", ""), 16)


def int_to_mac(value: int) -> str:
    text = f"{value:012x}"
    return ":".join(text[i:i + 2] for i in range(0, 12, 2))

"""What a BIRD file lacks for taprouter's graceful restart: read, never rewritten (pure)."""

from __future__ import annotations

import re

_COMMENTS = re.compile(r"/\*.*?\*/|#[^\n]*", re.S)
_KERNEL = re.compile(r"\bprotocol\s+kernel\b\s*([A-Za-z_][\w]*)?[^{;]*\{")
_GRACEFUL = re.compile(r"\bgraceful\s+restart\s*(on|yes|true)?\s*;")


def _block(text: str, start: int) -> str:
    """The text of the block whose `{` is at text[start - 1], up to its matching `}`."""
    depth = 1
    for i in range(start, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[start:i]
    return text[start:]


def kernel_without_graceful_restart(text: str) -> list[str]:
    """Names of the kernel protocols (`#N` for an unnamed one, in order) without `graceful restart
    on;`. Without it, a restarted BIRD removes its predecessor's kernel routes at once, and their
    flows follow, until the routing protocols have relearnt them."""
    text = _COMMENTS.sub("", text)
    missing = []
    for n, match in enumerate(_KERNEL.finditer(text), 1):
        if not _GRACEFUL.search(_block(text, match.end())):
            missing.append(match.group(1) or f"#{n}")
    return missing


def warnings(text: str) -> list[str]:
    return [f"protocol kernel {name} has no `graceful restart on;`: when BIRD dies and taprouter restarts "
            "it, that protocol removes the routes the dead BIRD put in the kernel (and their flows on the "
            "switch) until they are learnt again" for name in kernel_without_graceful_restart(text)]

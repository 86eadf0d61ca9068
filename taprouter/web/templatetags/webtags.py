"""Filters for the daemon's numbers: Unix times and durations as people read them."""

from __future__ import annotations

from datetime import datetime, timezone

from django import template

register = template.Library()


@register.filter
def unixtime(value) -> str:
    if value is None:
        return "–"
    return datetime.fromtimestamp(float(value), timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


@register.filter
def ms(value) -> str:
    return "–" if value is None else f"{float(value) * 1000:.1f}"

"""Kernel routing state: the netlink mirror and BIRD supervision."""

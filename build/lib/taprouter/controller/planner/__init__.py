"""The planner: kernel state and what the switch holds in, the operations to send out; no I/O."""

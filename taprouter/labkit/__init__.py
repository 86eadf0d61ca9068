"""`taprouter lab`: a topology file built into namespaces, Open vSwitch bridges and daemons, and
the pytest plugin that runs one per test (docs/lab.md)."""

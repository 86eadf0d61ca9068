"""The switch as `ovs-ofctl` prints it: the tests' name for taprouter.labkit.ofctl (the lab's
pytest plugin parses flows with the same code)."""

from taprouter.labkit.ofctl import *  # noqa: F401,F403

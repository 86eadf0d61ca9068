"""taprouter: OpenFlow switches as routers whose control plane is the Linux kernel."""

__version__ = "0.1.0"

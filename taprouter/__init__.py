"""taprouter: OpenFlow switches as routers whose control plane is the Linux kernel."""

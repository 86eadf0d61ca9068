"""A configured port that the switch reports only after it connected (added to the bridge at run
time): its TAP is set up then, and the kernel's frames from it reach the switch at once, not
after the next reconnection."""

from __future__ import annotations

import pytest

from routerlab import RouterLab, running_lab, run


class LatePortLab(RouterLab):
    """The usual lab, with port 3's veth off the bridge when the daemon starts."""

    LATE = 3

    def build(self) -> None:
        super().build()
        run("ovs-vsctl", "del-port", self.bridge, self.lab.switch_veth(self.LATE))

    def punt_flows_installed(self) -> bool:
        """Those of the ports on the switch: the late one has none until it comes."""
        return self.punt_flows_for([n for n in self.taps if n != self.LATE])


@pytest.fixture
def late_port_lab(request, tmp_path, ovs):
    yield from running_lab(request, LatePortLab(tmp_path), "late_port_lab")


def test_a_port_added_at_run_time_carries_the_kernels_frames_at_once(late_port_lab):
    lab = late_port_lab
    lab.wait_log(r"configured port 3 is not on switch")
    lab.assert_ping(lab.host(1), "10.0.1.1", count=2)
    dropped = lab.fresh_daemon_status()["relay"]["send_dropped"]  # frames from before the switch came
    mark = lab.log_path.stat().st_size
    veth = lab.lab.switch_veth(3)
    run("ovs-vsctl", "add-port", lab.bridge, veth, "--", "set", "interface", veth, "ofport_request=3")
    lab.wait_log(r"TAP \S+ opened for port 3", since=mark)
    # h3's ARP request goes up as a PacketIn; the kernel's answer, and its echo replies, come back
    # out of the new TAP: they must reach the switch, not be dropped for want of a sender.
    lab.assert_ping(lab.host(3), "10.0.3.1", count=3)
    lab.assert_ping(lab.host(3), "2001:db8:3::1", count=3)
    lab.assert_ping(lab.host(3), "10.0.1.2", count=3)  # and routed on, both ways
    relay = lab.fresh_daemon_status()["relay"]
    assert relay["send_dropped"] == dropped, f"frames from the TAPs dropped since the port came: {relay}"

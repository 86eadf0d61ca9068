"""An edge router with two eBGP upstreams: the default route follows the preferred one, and fails over."""


def test_the_default_route_prefers_isp1_and_fails_over_to_isp2(taprouter_lab):
    lab = taprouter_lab("edge.yaml")
    assert lab.routes("edge").kernel["0.0.0.0/0"] == ("192.0.2.2",)
    assert lab.routes("edge").switch["0.0.0.0/0"].group is not None  # forwarded by the switch
    assert lab.ping("pc", "203.0.113.1").loss == 0
    lab.link_down("edge", "isp1")
    lab.wait_until(lambda: lab.routes("edge").kernel.get("0.0.0.0/0") == ("198.51.100.2",), timeout=15)
    lab.wait_until(lambda: lab.ping("pc", "203.0.113.1", count=1).loss == 0, timeout=5)  # traffic follows

"""Three routers in an OSPF triangle with an upstream: what a network engineer checks before going live."""


def test_hosts_reach_each_other_and_the_upstream_over_ecmp(taprouter_lab):
    lab = taprouter_lab("triangle.yaml")
    assert lab.ping("h1", "h2").loss == 0
    assert lab.ping("h1", "198.51.100.1").loss == 0  # learned by eBGP on r3, carried by OSPF
    routes = lab.routes("r1")
    assert routes.kernel["10.2.0.0/24"] == ("10.0.12.2", "10.0.13.2")  # two equal-cost paths
    assert routes.switch["10.2.0.0/24"].group_type == "select" and routes.switch["10.2.0.0/24"].paths == 2


def test_a_failed_link_moves_the_traffic(taprouter_lab):
    lab = taprouter_lab("triangle.yaml")
    lab.link_down("r1", "r2")
    lab.wait_converged()
    assert lab.routes("r1").kernel["10.2.0.0/24"] == ("10.0.13.2",)
    assert lab.ping("h1", "h2").loss == 0

"""The controller: the OpenFlow model, the planner, the switch sessions, and the wiring that joins them."""

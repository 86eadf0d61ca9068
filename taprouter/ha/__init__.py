"""The HA pair: the lease in PostgreSQL (lease), and the role it gives a router (roles, pure)."""

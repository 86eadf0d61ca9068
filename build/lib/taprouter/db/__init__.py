"""The policy database: a Django app (label `taprouter`) whose models and migrations are the one schema."""

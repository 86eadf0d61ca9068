"""Policy flows (ACLs and policy-based routing): their typed model, validation and storage."""

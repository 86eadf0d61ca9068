"""The OpenFlow session with each switch: os-ken, the connection and TLS, sending, read-back."""

"""The web UI: a Django app over the policy store and the daemon's control socket."""

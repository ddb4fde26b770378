"""Go-live preflight: network reachability of the national platform and terminal environments."""

"""Traffic capture for meshed pods: the iptables rules of the future init container."""

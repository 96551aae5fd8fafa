"""Usage charging: network peers, usage records (CDRs), rating, thresholds, barring."""

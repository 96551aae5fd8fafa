"""worker domain."""

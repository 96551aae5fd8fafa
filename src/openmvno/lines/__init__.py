"""lines domain."""

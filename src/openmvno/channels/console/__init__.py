"""channels console domain."""

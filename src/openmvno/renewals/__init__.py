"""renewals domain."""

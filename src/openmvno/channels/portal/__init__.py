"""channels portal domain."""

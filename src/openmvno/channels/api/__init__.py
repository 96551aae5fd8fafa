"""channels api domain."""

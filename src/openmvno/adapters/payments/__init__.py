"""adapters payments domain."""

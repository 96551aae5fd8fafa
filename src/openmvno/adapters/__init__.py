"""adapters domain."""

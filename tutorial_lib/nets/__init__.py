"""Neural networks, one per module."""

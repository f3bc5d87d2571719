"""PHEW (placeholder until written)."""

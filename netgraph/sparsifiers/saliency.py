"""SNIP and GraSP (placeholder)."""

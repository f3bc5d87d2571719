"""Metrics of (graph, mask) pairs, comparisons across methods, and plots."""

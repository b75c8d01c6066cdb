"""Benchmarks run as commands against the real broker and Redis; each writes JSON."""

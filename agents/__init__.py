"""Thin Faust agents: decode, call the pure core, write, emit."""

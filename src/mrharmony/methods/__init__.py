"""Harmonization methods: one module per method family."""

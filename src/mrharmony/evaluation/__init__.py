"""Evaluation of harmonizers: patch MSE in SH space, paired tests, whole-volume errors, tables."""

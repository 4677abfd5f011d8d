"""Audits: the spec, the benchmark set, attacks, defense jobs per item, the report."""

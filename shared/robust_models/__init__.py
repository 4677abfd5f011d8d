"""Robust models: ``robustify`` (``shared.robustify``) as a GPU job over REST — a tenant's
noise-robust copy of a supported model, trained by a GPU worker, its checkpoint and training
record in the object store and the database."""

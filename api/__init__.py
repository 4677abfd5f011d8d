"""HTTP only: the FastAPI app, its routes, and the one mapping of domain errors to problem+json."""

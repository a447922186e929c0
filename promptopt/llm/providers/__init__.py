"""Model providers: one module per provider, built from a ModelSpec through the registry."""

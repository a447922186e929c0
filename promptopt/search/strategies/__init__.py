"""Search strategies: one module each, plus the shared bandits and the registry."""

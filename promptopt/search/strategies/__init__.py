"""Search strategies: one module each, and the registry (shared selection is in
`promptopt.search.selection`)."""

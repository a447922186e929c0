"""Calling models: the client (cache, single-flight, budget reservation, concurrency, retries),
the journal of a run's answers, prices, and `providers/` (the only code that imports an SDK)."""

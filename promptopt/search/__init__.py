"""The search: the engine (loop, checkpoints, resume, final held-out gate), the narrow context
strategies see, shared selection (bandits), plans and budgets, and `strategies/`."""

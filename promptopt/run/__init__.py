"""The run folder on disk and its typed records (config, summary, candidates, events, final
evaluation)."""

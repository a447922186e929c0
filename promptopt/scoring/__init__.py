"""Scoring prompts: metrics, the scorer of a prompt on examples, paired statistics, and the
runtime that assembles clients, metric and scorer for one command."""

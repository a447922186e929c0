"""Shared fakes, fixtures and helpers of the test suite (its data files are in `fixtures/`)."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).resolve().parent / "fixtures"

"""Test doubles that promptopt's own tests and benchmarks share."""

from promptopt.testing.fake_server import FakeOpenAIServer, Mode, body_hash, echo_reply

__all__ = ["FakeOpenAIServer", "Mode", "body_hash", "echo_reply"]

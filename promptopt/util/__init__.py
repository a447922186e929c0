"""Small helpers every layer may use: content hashing, redaction of secrets, atomic files."""

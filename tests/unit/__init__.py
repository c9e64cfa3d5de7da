"""Fast, pure tests: code in memory, no socket, no process (its conftest.py refuses them)."""

"""Recorded workflow histories, one per lifecycle branch, replayed by tests/test_replay.py."""

"""Recorded workflow histories, one per lifecycle branch, replayed by tests/workflow/test_replay.py."""

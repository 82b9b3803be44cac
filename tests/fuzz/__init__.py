"""Fuzzers and crash loops: the frame generator, the invariants, and the standalone tools
(``fuzz_daemon.py``, ``crashloop.py``; docs/testing.md says how to run them)."""

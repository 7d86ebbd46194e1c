"""Benchmarks of plan and apply against the sandbox; see docs/BENCHMARKS.md."""

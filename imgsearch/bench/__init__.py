"""Benchmarks that measure imgsearch on this machine: figures, not tests."""

"""Fuzzing and sanitizer builds of the C Kineto scanner (see scripts/fuzz.sh)."""

"""Data: loading seeds and benchmarks by spec, and building SFT and preference sets."""

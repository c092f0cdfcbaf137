"""Peers that hotline's benchmarks measure themselves against (each runs in its own venv)."""

"""Database faults injected during a run."""

"""Measure a gateway from its Postgres alone: a read-only sampler, the pure cycle inference, the writer."""

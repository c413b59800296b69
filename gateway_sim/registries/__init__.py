"""Registries hosted behind :mod:`gateway_sim.registry_api` other than this project's own (``sim``)."""

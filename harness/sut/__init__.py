"""What the harness starts: Postgres, gateway processes, the latency proxy, the stack."""

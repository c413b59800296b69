"""``python -m gateway_sim``: run the gateway alone."""

from gateway_sim.cli import main

raise SystemExit(main())

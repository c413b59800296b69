"""``python -m harness.observe.live --db-url URL``: cycles as they are inferred, one JSON line each on stdout.

For consumers that cannot run the sampler in their own process (Locust's gevent loop): the locustfile
starts this and turns each line into ``CLEANUP`` statistics. Runs until stdin closes or SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from typing import Any

from harness.observe.infer import InferenceParams, infer_cycles
from harness.observe.sampler import Observation, ObserveError, Sampler
from harness.observe.session import stop_on_signal

EMIT_EVERY = 1.0


class LiveEmitter:
    """Called after every poll; about once a second infers the cycles that are over and emits the new ones."""

    def __init__(self, write: Any = None, params: InferenceParams | None = None) -> None:
        self.write = write or (lambda line: print(line, flush=True))
        self.params = params or InferenceParams()
        self.emitted_until = 0.0
        self._last = 0.0
        self.count = 0

    def __call__(self, obs: Observation) -> None:
        now = obs.in_transaction[-1][0] if obs.in_transaction else 0.0
        if now - self._last < EMIT_EVERY:
            return
        self._last = now
        settled = now - self.params.max_gap - 0.2  # a cycle may still grow until max_gap has passed
        since = max(self.emitted_until, obs.started_at)
        events = obs.rows.events(since)
        for cycle in infer_cycles(events, obs.transactions.all(), obs.rows.vanished, self.params):
            if cycle.last_refresh >= settled or cycle.start < since:
                continue
            self.count += 1
            self.emitted_until = cycle.end + 1e-6
            self.write(json.dumps({"cycle": self.count, "start": cycle.start, "end": cycle.end,
                                   "total_ms": cycle.duration_ms, "refreshed": cycle.refreshed,
                                   "expired": cycle.expired, "removed_disconnected": cycle.removed_one_by_one}))
        obs.rows.forget_before(self.emitted_until - 60.0)
        obs.transactions.forget_before(self.emitted_until - 60.0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.observe.live")
    parser.add_argument("--db-url", required=True)
    parser.add_argument("--application-name", default=None)
    args = parser.parse_args(argv)
    sampler = Sampler(args.db_url, args.application_name, on_poll=LiveEmitter())
    try:
        sampler.open()
    except ObserveError as exc:
        print(f"observe: error: {exc}", file=sys.stderr)
        return 1

    def watch_stdin() -> None:  # the parent went away: stop
        sys.stdin.read()
        sampler.stop()

    threading.Thread(target=watch_stdin, daemon=True).start()
    with stop_on_signal(sampler.stop):
        sampler.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""One run: the Locust process, the collector, calibration, summaries."""

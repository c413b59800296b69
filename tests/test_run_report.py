"""The run report's pool series: window peaks from the cycle records, time-weighted means from the counters."""

from __future__ import annotations

from harness.report.run_report import window_means, window_peaks


def test_window_means_are_time_weighted_between_samples() -> None:
    samples = [
        {"t": 0.0, "uptime_seconds": 10.0, "checked_out_seconds": 5.0},
        {"t": 1.0, "uptime_seconds": 11.0, "checked_out_seconds": 5.5},  # 0.5 connection-seconds in 1 s
        {"t": 3.0, "uptime_seconds": 13.0, "checked_out_seconds": 25.5},  # a burst of 10 connections for 2 s
    ]
    assert window_means(samples) == [(1.0, 0.5), (3.0, 10.0)]


def test_window_peaks_show_a_burst_that_point_samples_miss() -> None:
    cycles = [{"t": 5.0, "pool": {"checked_out_peak": 3}}, {"t": 10.0, "pool": {"checked_out_peak": 20}}]
    xs, ys = window_peaks(cycles)
    assert xs == [5.0, 5.0, 5.0, 10.0] and ys == [3.0, 3.0, 20.0, 20.0]  # the window (5, 10] peaked at 20


def test_a_restarted_gauge_gives_no_negative_span() -> None:
    samples = [{"t": 0.0, "uptime_seconds": 10.0, "checked_out_seconds": 5.0},
               {"t": 1.0, "uptime_seconds": 0.5, "checked_out_seconds": 0.1}]  # the gateway restarted
    assert window_means(samples) == []

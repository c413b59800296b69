"""Every HTML page and plot of the harness."""

"""The model, the bench and sweep engines, the recommendation."""

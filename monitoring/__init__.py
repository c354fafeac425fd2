"""Watching the model in production: ground truth, live quality, drift against the training data, gauges."""

"""Beans in a photo: found, separated and measured into the Dry Bean dataset's 16 features."""

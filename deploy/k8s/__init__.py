"""Kubernetes manifests for the drybeans service, generated from one small config."""

"""The HTTP edge of the service and its worker processes: access control, probes, metrics, lifecycle."""

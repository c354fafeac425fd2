"""The browser console at `/`: classify beans, browse the records, see the model and the service's health."""

"""Read-only commands over caches: inspect, audit, export."""

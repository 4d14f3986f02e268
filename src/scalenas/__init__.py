"""ScaleNAS."""

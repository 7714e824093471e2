"""The domain model: pure rules and plain data, no I/O."""

"""tidal's benchmarks: tools, not tests (CI times nothing)."""

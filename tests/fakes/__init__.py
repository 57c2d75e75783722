"""Stand-ins that several test modules share (fake registries, blob sources); never a test module itself."""

"""Tests of cacheport.ops: the side-effect layer (docker, buildx, registries, files)."""

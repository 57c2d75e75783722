"""Tests of cacheport.report: the build report's model, sources and rendering."""

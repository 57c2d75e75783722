"""Tests of cacheport.cli: the commands, their output files and what they print."""

"""Tests of templates/: the GitHub action and the GitLab CI template, run through their expressions."""

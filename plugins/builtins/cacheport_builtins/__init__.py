"""cacheport's built-in backends and CI-context providers.

They are ordinary plugins: registered through the ``cacheport`` entry-point group in cacheport's own
pyproject.toml, using only the public API. The core never imports this package.
"""

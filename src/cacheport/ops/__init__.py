"""Side effects built on plans and stores: seed, inventory (status, prune), checks (doctor), build, rotate.

Nothing here parses what a backend rendered: caches are reached through the backend's :class:`~cacheport.CacheStore`.
Nothing here imports click: the commands in :mod:`cacheport.cli` print what these return.
"""

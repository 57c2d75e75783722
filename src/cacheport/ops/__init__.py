"""Side effects built on plans and stores: seed, inventory (status, prune), checks (doctor), build, rotate.

Nothing here parses what a backend rendered: caches are reached through the backend's :class:`~cacheport.CacheStore`.
Nothing here imports click: the commands in :mod:`cacheport.cli` print what these return.
"""

#: how many caches, blobs or tags a registry operation works on at once, unless ``--jobs`` says otherwise: enough
#: to hide a 50 ms round trip, few enough for a registry's rate limits.
DEFAULT_JOBS = 8
#: the same for ``status`` and ``prune``, whose requests are small (a manifest, a delete).
DEFAULT_LOOKUPS = 16

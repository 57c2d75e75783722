"""Side effects built on plans and stores: seed, inventory (status, prune), checks (doctor), build, rotate.

Nothing here parses what a backend rendered: caches are reached through the backend's :class:`~cacheport.CacheStore`.
Nothing here imports click: the commands in :mod:`cacheport.cli` print what these return.
"""

#: how many caches, blobs or tags a registry operation works on at once, unless ``--jobs`` says otherwise: enough
#: to hide a 50 ms round trip and to send a BuildKit cache's blobs in one go (as ``imagetools create`` does),
#: few enough for a registry's rate limits.
DEFAULT_JOBS = 16
#: the same for ``status`` and ``prune``, whose requests are small (a manifest, a delete).
LOOKUP_JOBS = 32

"""OCI content: the cache formats BuildKit writes (:mod:`.format`), a registry client (:mod:`.client`) and
OCI layout directories (:mod:`.layout`). Nothing here knows a backend, a plan or the command line.
"""

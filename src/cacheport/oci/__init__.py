"""OCI content and the registry API, knowing no backend, plan or command line.

- the cache formats BuildKit writes: :mod:`.format`; OCI layout directories: :mod:`.layout`;
- the registry client, split by job: :mod:`.reference` (image references), :mod:`.auth` (credentials and the
  registry login flow, with :mod:`.realm`: where credentials may go), :mod:`.http` (answer budgets, bodies,
  errors), :mod:`.retry`, :mod:`.registry` (the API), :mod:`.upload` (blob uploads and their journal),
  :mod:`.repository` (a repository as a store session);
- :mod:`.copy`: copying a cache between two store sessions (``seed``'s engine).
"""

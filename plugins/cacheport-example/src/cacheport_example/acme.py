"""A registry-type third-party backend: the company registry, one cache repository per project."""

from cacheport import EntryRequest, hookimpl
from cacheport.kit import RegistryCache, registry_backend, registry_options
from cacheport.refs import slug


def cache(request: EntryRequest) -> RegistryCache:
    """Where this project's cache lives: <ref>/<project>, one tag per branch."""
    options = request.options
    return RegistryCache.from_options(f"{options['ref']}/{slug(request.context.project)}", options)


@hookimpl
def cacheport_backends():
    return [registry_backend(
        "acme", "ACME's registry: every project's cache under one path.",
        registry_options("registry.acme.example/buildcache", "Where the projects' cache repositories live.",
                         username_env="ACME_REGISTRY_USER", password_env="ACME_REGISTRY_TOKEN"),
        cache,
    )]

"""From settings and context to a Plan: which caches to import, in order, and which to export.

The plan asks the selected backend for entries and applies the rules every backend shares: no duplicates,
no exports from untrusted or read-only jobs. It reads no files and no environment of its own.
"""

from __future__ import annotations

import attrs

from cacheport.config import (
    Config,
    default_cache_home,
    env_overrides,
    parse_text,
    resolve_backend,
    resolve_globals,
    resolve_migration,
    unknown_variables,
)
from cacheport.entry import CacheEntry
from cacheport.errors import ConfigError, PluginError, UnknownBackendError, did_you_mean
from cacheport.plugins import Plugins
from cacheport.records import Backend, BackendEntries, Context, EntryRequest, Setting, Source
from cacheport.records import Migration as Migration
from cacheport.records import Plan as Plan
from cacheport.records import ShownSetting as ShownSetting


def _unique(entries: tuple[CacheEntry, ...]) -> tuple[CacheEntry, ...]:
    return tuple(dict.fromkeys(entries))


def select_backend(config: Config, context: Context, plugins: Plugins) -> tuple[Backend, Setting, list[str]]:
    """The backend named by the settings, else the context's default (``local`` if that one is missing)."""
    chosen = resolve_globals(config)["backend"]
    warnings: list[str] = []
    if chosen.value is None:
        name = context.default_backend
        chosen = Setting(name, Source("default", f"default ({context.provider} context)"))
        try:
            return plugins.backend(name), chosen, warnings
        except UnknownBackendError:
            if name == "local":
                raise
            warnings.append(f"the {context.provider} default backend {name!r} is not installed; using 'local'")
            chosen = Setting("local", Source("default", "default"))
    return _named(plugins, str(chosen.value), chosen), chosen, warnings


def _named(plugins: Plugins, name: str, setting: Setting) -> Backend:
    """The backend a setting names; an unknown name is an error that says which setting named it."""
    try:
        return plugins.backend(name)
    except UnknownBackendError as exc:
        raise UnknownBackendError(f"{setting.source.detail}: {exc}") from None


def _ask(plugins: Plugins, backend: Backend, request: EntryRequest) -> BackendEntries:
    result = plugins.guarded(backend, "entries", lambda: backend.entries(request))
    if not isinstance(result, BackendEntries):
        raise PluginError(f"backend {backend.name!r} returned {type(result).__name__}, expected BackendEntries")
    return result


def backend_request(config: Config, backend: Backend, request: EntryRequest) -> tuple[EntryRequest, dict[str, Setting]]:
    """What another backend is asked, beside the selected one: its own options, the same context and key."""
    options = resolve_backend(config, backend, selected=False)
    return attrs.evolve(request, options={n: s.value for n, s in options.items()}), options


def _shown(backend: Backend, options: dict[str, Setting], result: BackendEntries | None = None) -> list[ShownSetting]:
    """The backend's settings as explain shows them; an unset cache-export option the backend decided for itself
    (registry's image-manifest) shows the value its export carries, so explain never says "unset" beside an
    export that states it. Only BuildKit's export attributes: another option may share a name and not a meaning
    (local's dest is where the cache ends up; the export's dest, where this build writes it)."""
    from cacheport.kit import EXPORT_OPTIONS

    export = result.exports[0] if result is not None and result.exports else None
    out = []
    for name, s in options.items():
        option = backend.option(name)
        secret = bool(getattr(option, "secret", False))
        stated = export.get(name) if export is not None and option is not None and name in EXPORT_OPTIONS else None
        if s.value is None and s.source.level == "default" and stated is not None and option is not None and not secret:
            try:
                value = parse_text(option, stated, name)
            except ConfigError:
                value = stated
            s = Setting(value, Source("default", f"default: {backend.name}'s own choice, as its export states"))
        out.append(ShownSetting(f"{backend.name}.{name}", s, secret=secret))
    return out


def _decide_trust(context: Context, globals_: dict[str, Setting], warnings: list[str]) -> Context:
    """The context with the trust rules' decision in it, which every backend then follows."""
    from cacheport.trust import decide, parse_events

    events = globals_["trust-events"]
    mode = globals_["trust"].value
    trust = decide(context, mode, parse_events(events.value, events.source.detail))
    if trust.mode == "protected" and trust.writes and context.protected is None and context.provider != "local":
        warnings.append(f"trust = \"protected\", but {context.provider} does not say whether this ref is "
                        "protected; it is treated as unprotected")
    if trust.signed:
        from cacheport.signing import policy_from

        policy_from(globals_, context.project, trust.protected)  # a bad key or no signer: one line, before anything
    return attrs.evolve(context, trust=trust)


def build_plan(config: Config, context: Context, plugins: Plugins) -> Plan:
    """Compute the plan: resolve settings, ask the backend(s) for entries, apply the shared rules.

    While migrating (``[migration] from = OLD``), dual-read imports the new backend's chain and then the old
    one's and exports to the new one; dual-write also exports to the old one; cutover uses the new one only.
    """
    globals_ = resolve_globals(config)
    migration = resolve_migration(config)
    backend, backend_setting, warnings = select_backend(config, context, plugins)
    options = resolve_backend(config, backend, selected=True)
    known = plugins.backends()
    warnings += unknown_variables(config.environ, known)
    warnings += env_overrides(config, {b.name: frozenset(o.key for o in b.options if o.secret) for b in known.values()})
    for table in config.tables:
        if table not in known:
            warnings.append(f"{config.path}: table [{table}] names no installed backend{did_you_mean(table, known)}; "
                            "ignored")
    for scope in sorted({scope for scope, _key in config.values} - {"", "*", "migration", "mounts", backend.name}):
        if scope in known:
            resolve_backend(config, known[scope], selected=False)  # typos for idle backends still deserve an error
        elif scope not in config.tables:  # from a flag or a variable: a misspelt backend name
            first = next(s for (sc, _k), ss in config.values.items() if sc == scope for s in ss)
            raise ConfigError(f"{first.source.detail}: there is no backend {scope!r}{did_you_mean(scope, known)}; "
                              f"available: {', '.join(known)}")

    context = _decide_trust(context, globals_, warnings)
    key = globals_["key"].value
    cache_dir = str(default_cache_home(config.environ) / "cacheport")
    request = EntryRequest({n: s.value for n, s in options.items()}, context, key, cache_dir, config.environ)
    result = _ask(plugins, backend, request)
    warnings.extend(result.warnings)
    results = [result]
    shown = [ShownSetting("backend", backend_setting)]
    shown += [ShownSetting(name, s, secret=_key_given_as_name(name, s)) for name, s in globals_.items()
              if name != "backend"]
    shown += _shown(backend, options, result)

    old_name, phase = migration["from"].value, str(migration["phase"].value)
    migrating: Migration | None = None
    if old_name is not None:
        shown += [ShownSetting(f"migration.{n}", s) for n, s in migration.items()]
        old = _named(plugins, str(old_name), migration["from"])
        if old.name == backend.name:
            warnings.append(f"[migration] from = {old.name!r} is the current backend; nothing to migrate")
        elif phase == "cutover":
            warnings.append(f"migration from {old.name!r} is in cutover: only {backend.name!r} is used; "
                            "`cacheport switch --finish` removes the [migration] table")
        else:
            try:
                old_request, old_options = backend_request(config, old, request)
                old_result = _ask(plugins, old, old_request)
            except ConfigError as exc:
                # The old backend is only a fallback to read: where it can't be used (its registry variable is
                # GitLab's, and this is a laptop), build from the new one alone rather than not at all.
                warnings.append(f"migration: the old backend {old.name!r} can't be used here, so it is not read: {exc}")
            else:
                migrating = Migration(old.name, phase, old_request)
                shown += _shown(old, old_options, old_result)
                warnings.extend(f"{old.name}: {w}" for w in old_result.warnings)
                if phase == "dual-read":
                    # Only the new home is written: the old one must not be told about new work it would keep.
                    old_result = attrs.evolve(old_result, exports=(), swaps=(), tags=())
                results.append(old_result)

    trust = context.trust
    assert trust is not None
    withheld = bool(globals_["read-only"].value) or not trust.writes
    exports = _unique(tuple(e for r in results for e in r.exports))
    swaps = tuple(s for r in results for s in r.swaps)
    tags = tuple(dict.fromkeys(t for r in results for t in r.tags))
    if withheld:
        why = ("this job is untrusted (a merge/pull request from a fork)" if not context.trusted
               else f"the trust rule {trust.rule} lets it read only" if not trust.writes else "read-only is set")
        warnings.append(f"not exporting cache: {why}")
        exports, swaps, tags = (), (), ()

    return Plan(
        context=context,
        backend=backend.name,
        imports=_unique(tuple(e for r in results for e in r.imports)),
        exports=exports,
        swaps=swaps,
        warnings=tuple(warnings),
        settings=tuple(shown),
        secret_attrs=frozenset().union(*(r.secret_attrs for r in results)),
        logins=tuple(dict.fromkeys(lg for r in results for lg in r.logins)),
        tags=tags,
        read_only=withheld,
        request=request,
        migration=migrating,
    )


def _key_given_as_name(name: str, setting: Setting) -> bool:
    """A private key set as ``signing-key-env`` by mistake: a person reads it as ``***``, never as it is."""
    if name != "signing-key-env" or setting.source.level == "default" or not setting.value:
        return False
    from cacheport.signing import looks_like_a_key  # only when set by hand: `cacheport args` starts without it

    return looks_like_a_key(str(setting.value))

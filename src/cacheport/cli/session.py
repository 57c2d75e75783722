"""One command's session: what it was given on the command line, and what follows from that, each built once
and only when the command asks (tox 4's ``session/state.py``).

A command declares :func:`cacheport.cli.common.plan_options` and receives a :class:`Session`; ``init`` and
``switch``, which take fewer options, make their own. From then on a command asks the session for the plugins,
the config, the context, the plan and a backend's store; nothing else loads them.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from cacheport.cli.output import warn
from cacheport.errors import ConfigError

if TYPE_CHECKING:
    from cacheport.config import Config
    from cacheport.context import Context
    from cacheport.plan import Plan
    from cacheport.plugins import Plugins
    from cacheport.records import Backend, CacheStore, EntryRequest

_warned: set[tuple[str, str]] = set()


@attrs.frozen
class Options:
    """The plan options as the command line gave them.

    Attributes:
        backend: ``--backend`` (or the command's own flag for it), or None.
        key: ``--key``, or None.
        sets: each ``--set NAME=VALUE``, in order.
        read_only: ``--read-only``, or None when not given.
        config_path: ``--config``, or None.
        verbose: how many ``-v``.
        backend_flag: the flag that gave ``backend``, for messages (``--to`` in ``seed``).
        mounts: ``--mounts on|off`` (``build``), or None when not given.
    """

    backend: str | None = None
    key: str | None = None
    sets: tuple[tuple[str, str], ...] = ()
    read_only: bool | None = None
    config_path: Path | None = None
    verbose: int = 0
    backend_flag: str = "--backend"
    mounts: str | None = None

    def cli_values(self) -> list[tuple[str, Any, str]]:
        """The command line's settings, as :func:`cacheport.config.load_config` takes them."""
        values: list[tuple[str, Any, str]] = [(n, v, f"--set {n}") for n, v in self.sets]
        if self.backend is not None:
            values.append(("backend", self.backend, self.backend_flag))
        if self.key is not None:
            values.append(("key", self.key, "--key"))
        if self.read_only:
            values.append(("read-only", True, "--read-only"))
        if self.mounts is not None:
            values.append(("mounts", self.mounts, "--mounts"))
        return values


@attrs.frozen(slots=False)
class Session:
    """One command's inputs, each built on first use and kept: ask the session, never load them again.

    Attributes:
        command: the command's name, for messages (``seed``, ``status``).
        options: the plan options it was given.
        environ: the environment it runs in.
        plan_warnings: whether the plan's warnings are said (``seed`` names every cache itself, and says none).
    """

    command: str
    options: Options = Options()
    plan_warnings: bool = attrs.field(default=True, kw_only=True)
    environ: Mapping[str, str] = attrs.field(factory=lambda: os.environ, eq=False, repr=False)

    @functools.cached_property
    def cwd(self) -> Path:
        """Where the command runs: the config is searched upward from here, and the context reads git here."""
        return Path.cwd()

    @functools.cached_property
    def plugins(self) -> Plugins:
        """The process's plugins; each broken one is warned about once, however many commands ask."""
        return load_plugins(self.options.verbose)

    @functools.cached_property
    def config(self) -> Config:
        """The settings, each with where it came from."""
        from cacheport.config import load_config

        self.plugins  # noqa: B018  # plugins first: a broken one is warned about before a bad config stops us
        return load_config(self.cwd, self.environ, config_path=self.options.config_path,
                           cli=self.options.cli_values())

    @functools.cached_property
    def context(self) -> Context:
        """Where we run: the CI, the branch, the trust facts."""
        from cacheport.context import detect_context

        return detect_context(self.plugins.context_providers(), self.environ, self.cwd)

    @functools.cached_property
    def plan(self) -> Plan:
        """Config + context → plan; its warnings are said once, here."""
        from cacheport.plan import build_plan

        plan = build_plan(self.config, self.context, self.plugins)
        for warning in plan.warnings if self.plan_warnings else ():
            warn(warning)
        return plan

    def store(self, backend: Backend | None = None, request: EntryRequest | None = None) -> CacheStore:
        """``backend``'s store for ``request`` (by default the plan's backend, for the plan's request), or one line
        saying that this command can't reach that backend's caches."""
        if backend is None:
            backend, request = self.plugins.backend(self.plan.backend), self.plan.request
        if backend.store is None or request is None:
            from cacheport.plugins import no_store

            raise ConfigError(no_store(backend, self.command))
        chosen, asked = backend, request
        store = self.plugins.guarded(chosen, "store", lambda: chosen.store(asked) if chosen.store else None)
        from cacheport.records import CacheStore

        if not isinstance(store, CacheStore):
            from cacheport.errors import PluginError

            raise PluginError(f"backend {backend.name!r} returned {type(store).__name__} from store, "
                              "expected CacheStore")
        return store

    def plan_for_text(self, text: str, path: Path) -> Plan:
        """The plan config ``text`` would give in place of ``path``, before it is written; a problem is reported
        as the change's."""
        import tempfile

        from cacheport.config import load_config
        from cacheport.errors import CacheportError
        from cacheport.plan import build_plan

        with tempfile.TemporaryDirectory(prefix="cacheport-") as tmp:
            candidate = Path(tmp) / path.name
            candidate.write_text(text, encoding="utf-8")
            try:
                return build_plan(load_config(Path(tmp), self.environ, config_path=candidate), self.context,
                                  self.plugins)
            except CacheportError as exc:
                message = str(exc).replace(str(candidate), str(path))
                raise type(exc)(f"{path} not written, because the result would be invalid: {message}") from None


def load_plugins(verbose: int = 0) -> Plugins:
    """The process's plugins; each broken one is warned about once, however many commands ask."""
    import click

    from cacheport.plugins import default_plugins

    plugins = default_plugins()
    for info in plugins.failures:
        if (info.name, info.error or "") in _warned:
            continue
        _warned.add((info.name, info.error or ""))
        warn(f"plugin {info.name!r} from {info.distribution} {info.version} failed to load and was skipped: "
             f"{info.error}" + ("" if verbose else " (-v shows the traceback)"))
        if verbose and info.traceback:
            click.echo(info.traceback.rstrip(), err=True)
    return plugins


def session_of(command: str, kwargs: dict[str, Any]) -> Session:
    """The session for the plan options click parsed (taken out of ``kwargs``)."""
    sets: Sequence[tuple[str, str]] = kwargs.pop("sets")
    return Session(command, Options(kwargs.pop("backend"), kwargs.pop("key"), tuple(sets), kwargs.pop("read_only"),
                                    kwargs.pop("config_path"), kwargs.pop("verbose")))

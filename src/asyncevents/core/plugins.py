"""The plugin manager: entry points loaded one by one, sinks by name.

A plugin that cannot be imported is kept aside, not fatal: when what is missing
is a dependency of one of its distribution's extras (the ``eventbridge`` sink
without boto3, the ``aws`` extra) it is *unavailable* (:class:`MissingExtra`,
"needs asyncevents[aws]"); any other error is a *failure*
(:class:`PluginFailure`, with the error). ``asyncevents sinks``, ``GET
/v1/sinks`` and the console's sinks page show both; a worker logs them when it
starts (:meth:`Plugins.log_problems`).
"""

from __future__ import annotations

import importlib.metadata as md
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

import pluggy

from asyncevents.core import hookspecs
from asyncevents.core.messages import TriggerMessage
from asyncevents.core.pipeline import MiddlewareFactory
from asyncevents.core.settings import Settings
from asyncevents.core.sink import Sink, sink_signs
from asyncevents.core.transport import Transport, safe_url, scheme_of
from asyncevents.errors import ConfigError, UnknownSink

__all__ = ["ENTRY_POINT_GROUP", "MissingExtra", "PluginFailure", "Plugins", "SinkInfo"]

ENTRY_POINT_GROUP = "asyncevents"
_M = TypeVar("_M", bound=TriggerMessage)


@dataclass(frozen=True)
class SinkInfo:
    """An installed sink and the distribution that provides it."""

    name: str
    factory: Any
    plugin: str
    distribution: str
    version: str

    @property
    def signs(self) -> bool:
        """Whether the sink signs deliveries with the subscription's token (see ``sink_signs``)."""
        return sink_signs(self.factory)


@dataclass(frozen=True)
class PluginFailure:
    """An entry point that could not be loaded, and why."""

    plugin: str
    distribution: str
    error: str


@dataclass(frozen=True)
class MissingExtra:
    """An entry point whose distribution's optional dependencies (an extra) are not installed."""

    plugin: str
    distribution: str
    version: str
    extra: str
    #: The module that could not be imported (``boto3``).
    module: str

    @property
    def needs(self) -> str:
        """What to install, as pip writes it: ``asyncevents[aws]``."""
        return f"{self.distribution}[{self.extra}]"


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def missing_extra(dist: md.Distribution | None, module: str | None) -> str | None:
    """The extra of ``dist`` that would install the missing ``module``, or None.

    A requirement matches when its project name is the module's name
    (``boto3``, ``PyMySQL`` for ``pymysql``) or the dotted module's
    (``opentelemetry-sdk`` for ``opentelemetry.sdk``). Of several extras that
    list it, the smallest is the one meant for it (``aws``, not ``test``).
    """
    if dist is None or not module:
        return None
    wanted = {_normal(module), _normal(module.split(".")[0])}
    found: dict[str, int] = {}
    sizes: dict[str, int] = {}
    for requirement in dist.requires or []:
        extra = re.search(r"""extra\s*==\s*["']([^"']+)["']""", requirement)
        if extra is None:
            continue
        name = _normal(re.split(r"[\s\[<>=!~;(]", requirement.strip(), maxsplit=1)[0])
        sizes[extra[1]] = sizes.get(extra[1], 0) + 1
        if name in wanted:
            found[extra[1]] = 1
    if not found:
        return None
    return min(found, key=lambda extra: (sizes[extra], extra))


@dataclass
class Plugins:
    """A pluggy manager plus what its plugins registered.

    ``Plugins.load()`` reads the entry points; tests build one with
    ``Plugins.load(entry_points=False)`` and register plugins inline.
    """

    manager: pluggy.PluginManager
    failures: list[PluginFailure] = field(default_factory=list)
    #: Plugins not loaded because an extra of their distribution is not installed.
    unavailable: list[MissingExtra] = field(default_factory=list)
    _origins: dict[str, tuple[str, str, str]] = field(default_factory=dict)
    _sinks: dict[str, SinkInfo] | None = None

    @classmethod
    def load(cls, *, disabled: Iterable[str] = (), entry_points: bool = True) -> Plugins:
        """Build the manager with the core defaults and every enabled entry point."""
        manager = pluggy.PluginManager("asyncevents")
        manager.add_hookspecs(hookspecs)
        from asyncevents.core.retry import schedules as retry

        # The core's own hook implementations (trylast): the default RetryManagement.
        manager.register(retry, name="asyncevents.core.retry")
        plugins = cls(manager=manager)
        if entry_points:
            plugins._load_entry_points(set(disabled))
        return plugins

    def _load_entry_points(self, disabled: set[str]) -> None:
        # pluggy's load_setuptools_entrypoints stops at the first broken plugin;
        # loading one by one keeps the others working and reports the broken one.
        for ep in md.entry_points(group=ENTRY_POINT_GROUP):
            dist = ep.dist.name if ep.dist is not None else "unknown"
            version = ep.dist.version if ep.dist is not None else ""
            if ep.name in disabled or self.manager.is_blocked(ep.name):
                continue
            if self.manager.get_plugin(ep.name) is not None:
                continue
            try:
                module = ep.load()
                self.manager.register(module, name=ep.name)
            except Exception as exc:
                missing = exc.name if isinstance(exc, ModuleNotFoundError) else None
                extra = missing_extra(ep.dist, missing)
                if extra is not None and missing is not None:
                    self.unavailable.append(MissingExtra(ep.name, dist, version, extra, missing))
                else:
                    self.failures.append(
                        PluginFailure(ep.name, dist, f"{type(exc).__name__}: {exc}"))
                continue
            self._origins[ep.name] = (ep.name, dist, version)

    def log_problems(self, log: Any) -> None:
        """Log the plugins that were not loaded: a warning per failure, a line per missing
        extra (what to install)."""
        for failure in self.failures:
            log.warning("plugin failed to load", plugin=failure.plugin,
                        distribution=failure.distribution, error=failure.error)
        for missing in self.unavailable:
            log.info("plugin not loaded: its optional dependencies are not installed",
                     plugin=missing.plugin, missing=missing.module, needs=missing.needs,
                     install=f"pip install '{missing.needs}'")

    def register(self, plugin: object, name: str | None = None) -> None:
        """Register a plugin object directly (tests, embedding applications)."""
        registered = self.manager.register(plugin, name=name)
        if registered:
            self._origins[registered] = (registered, "(registered in code)", "")
        self._sinks = None

    @property
    def hook(self) -> Any:
        """The pluggy hook relay."""
        return self.manager.hook

    def sinks(self) -> dict[str, SinkInfo]:
        """Every registered sink by name."""
        if self._sinks is None:
            found: dict[str, SinkInfo] = {}
            for impl in self.manager.hook.register_sinks.get_hookimpls():
                origin = self._origins.get(impl.plugin_name, (impl.plugin_name, "", ""))

                def register(
                    name: str, factory: Any, _origin: tuple[str, str, str] = origin
                ) -> None:
                    found[name] = SinkInfo(name, factory, *_origin)

                impl.function(register=register)
            self._sinks = found
        return self._sinks

    def sink_info(self, name: str) -> SinkInfo:
        """The sink named ``name``, or ``UnknownSink`` listing the installed ones."""
        sinks = self.sinks()
        if name not in sinks:
            known = ", ".join(sorted(sinks)) or "none installed"
            for missing in self.unavailable:
                if missing.plugin == name:
                    raise UnknownSink(f"sink {name!r} needs {missing.needs} ({missing.module} "
                                      f"is not installed): pip install '{missing.needs}'; "
                                      f"installed sinks: {known}")
            raise UnknownSink(f"unknown sink {name!r}; installed sinks: {known}")
        return sinks[name]

    def build_sink(self, name: str, settings: Settings) -> Sink:
        """A new instance of the sink named ``name``."""
        sink: Sink = self.sink_info(name).factory(settings)
        return sink

    def transports(self) -> dict[str, type[Transport]]:
        """Every registered transport class by URL scheme (the first registration wins)."""
        found: dict[str, type[Transport]] = {}
        self.manager.hook.register_transports(
            register=lambda scheme, factory: found.setdefault(scheme, factory))
        return found

    def transport(self, settings: Settings) -> Transport:
        """The transport for ``settings.transport_url``; a ``ConfigError`` lists the known ones."""
        url = settings.transport_url
        scheme = scheme_of(url)
        found = self.transports()
        if scheme not in found:
            known = ", ".join(f"{s}://" for s in sorted(found)) or "none installed"
            raise ConfigError(f"unsupported transport {scheme!r} in {safe_url(url)!r}; "
                              f"installed transports: {known}")
        return found[scheme](settings)

    def publish(self, messages: Sequence[_M], send: Callable[[Sequence[_M]], None]
                ) -> Sequence[_M]:
        """``send(messages)``, through the ``publish_messages`` hook when a plugin answers it
        (a producer span per event); the messages as sent."""
        if not self.manager.hook.publish_messages.get_hookimpls():
            send(messages)
            return messages
        sent = self.manager.hook.publish_messages(messages=messages, send=send)
        if sent is None:
            send(messages)
            return messages
        return cast("Sequence[_M]", sent)

    def middleware(self) -> list[MiddlewareFactory]:
        """The pipeline's middleware factories, in the order their plugins registered them."""
        found: list[MiddlewareFactory] = []
        for impl in reversed(self.manager.hook.register_middleware.get_hookimpls()):
            impl.function(register=found.append)
        return found

    def events(self) -> list[tuple[str, Any]]:
        """Event definitions registered in code by ``register_events``."""
        found: list[tuple[str, Any]] = []
        self.manager.hook.register_events(register=lambda name, d=None: found.append((name, d)))
        return found

"""The documentation site builds with ``mkdocs build --strict``, and its reference is the code's.

The site is built once, into a temporary directory, exactly as ``make docs``
builds it. ``reference/cli.md`` and ``reference/settings.md`` are made by the
hook ``scripts/gen_reference.py`` during the build: these tests check that
the built pages name every command, option and setting the code has, so a
command added without its help, or a page that stopped being generated,
fails here.

The site works opened from disk, with no network, as the README says: it
loads nothing from outside (no web fonts, no script from a CDN), its pages
are files (``name.html``, not directories), and its search runs in Chromium
from ``file://`` with every request that is not a file refused.
"""

from __future__ import annotations

import html
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import click
import pytest

from asyncevents.cli import cli
from asyncevents.core import hookspecs
from asyncevents.core.settings import Settings
from tests.helpers import chromium

ROOT = Path(__file__).resolve().parent.parent
# One site build for the module (the fixture below): its tests share one xdist worker.
pytestmark = pytest.mark.xdist_group("docs-site")


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_reference",
                                                  ROOT / "scripts" / "gen_reference.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    missing = [name for name in ("mkdocs", "material") if importlib.util.find_spec(name) is None]
    if missing:
        pytest.fail(f"{' and '.join(missing)} not installed for {sys.executable}: the docs "
                    "extra is part of the test environment; run `make docs` or "
                    "`pip install -e '.[docs]'`", pytrace=False)
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    build = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file",
         str(ROOT / "mkdocs.yml"), "--site-dir", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    assert build.returncode == 0, f"mkdocs build --strict failed:\n{build.stdout}\n{build.stderr}"
    assert "WARNING" not in build.stderr, build.stderr
    return out


def _page(site: Path, name: str) -> str:
    path = site / f"{name}.html"  # a file, not a directory: links work from disk
    assert path.is_file(), f"the site has no {name}.html page"
    return path.read_text(encoding="utf-8")


def _text(page: str) -> str:
    """What a reader sees of ``page``: no tags (code blocks are split into spans), no entities."""
    return html.unescape(re.sub(r"<[^>]+>", "", page))


def _commands() -> list[tuple[str, click.Command, click.Context]]:
    """Every visible command under ``asyncevents``, with its path and context."""
    found = []

    def walk(command: click.Command, ctx: click.Context) -> None:
        found.append((ctx.command_path, command, ctx))
        if isinstance(command, click.Group):
            for name in command.list_commands(ctx):
                sub = command.get_command(ctx, name)
                if sub is not None and not sub.hidden:
                    walk(sub, click.Context(sub, info_name=name, parent=ctx))

    walk(cli, click.Context(cli, info_name="asyncevents"))
    return found


def test_the_cli_reference_has_every_top_level_command(site: Path) -> None:
    html = _page(site, "reference/cli")
    names = cli.list_commands(click.Context(cli, info_name="asyncevents"))
    assert {"worker", "search", "subscribe", "publish", "replay", "serve"} <= set(names)
    for name in names:
        assert f'id="asyncevents-{name}"' in html, f"no section for `asyncevents {name}`"


def test_the_cli_reference_has_every_subcommand_option_and_help(site: Path) -> None:
    html = _page(site, "reference/cli")
    for path, command, ctx in _commands():
        assert f'id="{path.replace(" ", "-")}"' in html, f"no section for `{path}`"
        for param in command.get_params(ctx):
            if isinstance(param, click.Option) and not param.hidden and "--help" not in param.opts:
                for opt in param.opts:
                    assert f"<code>{opt}</code>" in html, f"`{path}` lacks {opt}"


def test_the_settings_reference_has_every_setting_with_its_default(site: Path) -> None:
    html = _page(site, "reference/settings")
    for name in ("ASYNCEVENTS_TRANSPORT_URL", "ASYNCEVENTS_DATABASE_URL",
                 "ASYNCEVENTS_SECRET_KEY", "ASYNCEVENTS_AMQP_QUEUE_TYPE",
                 "ASYNCEVENTS_EVENTBRIDGE_REGION"):
        assert f"<code>{name}</code>" in html, name
    for field in Settings.model_fields:
        assert f"<code>ASYNCEVENTS_{field.upper()}</code>" in html, field
    assert "<code>sqla+sqlite:///asyncevents-queue.db</code>" in html  # transport_url's default
    assert "<code>sqlite:///asyncevents.db</code>" in html


def test_the_other_pages_are_built_with_what_they_include(site: Path) -> None:
    # The quick start is the README's, which tests/test_readme.py runs.
    quick = _page(site, "quickstart")
    assert "asyncevents worker --max-idle-time 2" in _text(quick)
    assert "<!-- readme:" not in quick
    plugins = _page(site, "plugins")
    for name, func in vars(hookspecs).items():
        if hasattr(func, "asyncevents_spec"):
            assert f"<code>{name}(" in plugins, f"the hook {name} is not on the plugins page"
    assert "SinkContract" in plugins and "<!-- generated:" not in plugins
    deployment = _text(_page(site, "deployment"))
    assert "ASYNCEVENTS_AMQP_QUEUE_TYPE=quorum" in deployment
    assert "asyncevents worker --processes auto" in deployment
    for page in ("concepts", "sinks", "architecture", "query-language"):
        _page(site, page)
    assert "Where to go from here" in (site / "index.html").read_text(encoding="utf-8")


def test_the_generated_cli_reference_carries_each_command_help() -> None:
    markdown = _generator().cli_reference()
    for path, command, _ctx in _commands():
        first = (command.help or "").strip().splitlines()
        if first:
            assert first[0].strip() in markdown, f"`{path}`'s help is missing"


def test_the_reference_pages_are_not_committed_sources() -> None:
    # They are made at build time; a copy in docs/ would shadow the generated page.
    assert not (ROOT / "docs" / "reference").exists()


def test_an_include_of_a_missing_section_is_an_error() -> None:
    generator = _generator()
    with pytest.raises(ValueError, match="no section titled 'No such heading'"):
        generator.expand("<!-- readme: No such heading -->\n")
    assert "make run" in generator.expand("<!-- readme: Try it in one command -->\n")
    # The README links into docs/; on the site those pages are siblings.
    assert generator.site_links("see [it](docs/query-language.md)") == "see [it](query-language.md)"


# A resource a page loads (not a link a reader may follow): from outside if absolute.
_LOADED = re.compile(r"<(?:link|script|img|iframe|source|video|audio)\b[^>]*?"
                     r"\b(?:src|href)=\"((?:https?:)?//[^\"]+)\"")


def test_the_site_loads_nothing_from_outside(site: Path) -> None:
    pages = sorted(site.rglob("*.html"))
    assert len(pages) >= 10
    found = {f"{page.relative_to(site)}: {url}" for page in pages
             for url in _LOADED.findall(page.read_text(encoding="utf-8"))}
    assert found == set()
    for sheet in site.rglob("*.css"):
        assert not re.search(r"@import\s+url\(\s*[\"']?(https?:)?//",
                             sheet.read_text(encoding="utf-8")), sheet
    # The search index as a script, for pages opened from disk, and no directory pages.
    assert (site / "search" / "search_index.js").is_file()
    assert not (site / "quickstart" / "index.html").exists()


def test_search_works_on_the_site_opened_from_disk(site: Path) -> None:
    outside: list[str] = []
    errors: list[str] = []

    def only_files(route: Any) -> None:
        if route.request.url.startswith("file:"):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1366, "height": 768})
        page.set_default_timeout(15_000)
        page.route("**/*", only_files)
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.goto((site / "index.html").as_uri())
        box = page.locator("input.md-search__input")
        box.click()
        page.wait_for_function(  # the search index is loaded when the box is first used
            "() => !document.querySelector('.md-search-result__meta')"
            ".textContent.includes('Initializing')")
        page.keyboard.type("quorum", delay=20)
        page.wait_for_selector(".md-search-result__item")
        meta = page.inner_text(".md-search-result__meta")
        first = page.locator(".md-search-result__item a").first.get_attribute("href")
        assert first is not None and ".html" in first
        page.locator(".md-search-result__item a").first.click()
        page.wait_for_load_state()
        landed = page.url
    assert "matching document" in meta, meta
    assert landed.startswith("file://") and ".html" in landed  # a page, not a directory
    assert outside == [] and errors == []

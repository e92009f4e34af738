"""A Sphinx extension that keeps the built book self-contained: no page loads anything from a remote host.

Jupyter Book 1.x always loads ``sphinx-thebe``, which puts the URL of its JavaScript bundle on unpkg.com into
every page (loaded when a reader clicks a "live code" button; the book has none, its chapters are executed by
papermill before the build). This extension drops thebe's scripts from each page, and drops any other script
or stylesheet with a remote URL with a warning naming it, so that a ``-W`` build fails instead of shipping a
page that needs the network. MathJax itself is served from ``_static/mathjax`` by ``sphinx-mathjax-offline``.

Listed in ``_config.yml`` under ``sphinx: extra_extensions`` as ``certattr.book.sphinx_offline``.
"""
from __future__ import annotations

from sphinx.util import logging

logger = logging.getLogger(__name__)

_REMOTE = ("http://", "https://", "//")


def _filename(asset) -> str:
    return str(getattr(asset, "filename", asset) or "")


def _body(asset) -> str:
    return str(getattr(asset, "attributes", {}).get("body", ""))


def _is_thebe(asset) -> bool:
    return "sphinx-thebe" in _filename(asset) or "THEBE_JS_URL" in _body(asset)


def _strip_remote_assets(app, pagename, templatename, context, doctree):
    for key in ("script_files", "css_files"):
        assets = context.get(key)
        if not assets:
            continue
        kept = []
        for asset in assets:
            if _is_thebe(asset):
                continue
            if _filename(asset).startswith(_REMOTE):
                logger.warning(f"[certattr.book.sphinx_offline] {pagename}: dropped the remote asset "
                               f"{_filename(asset)} (the book must render offline; vendor it into _static)")
                continue
            kept.append(asset)
        context[key] = kept


def setup(app):
    # priority 900: after the other extensions have added their per-page scripts
    app.connect("html-page-context", _strip_remote_assets, priority=900)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}

"""The duty officer's console, served by the node at ``/`` (docs/console.md).

    mount_console(app, node)    add the console's pages, forms, live stream and static files

Jinja2 templates with autoescaping, htmx for partial updates, server-sent events for live
updates; front-end packages are served from ``static/vendor`` (copied from the npm packages
pinned in package-lock.json by ``make install``), so nothing is fetched from another machine.
"""

from hotline.web._console import Console, mount_console

__all__ = ["Console", "mount_console"]

"""The sinks shipped with asyncevents, registered through the ``asyncevents`` entry points.

The core never imports this package: each sink module is a pluggy plugin,
loaded like any third-party one.
"""

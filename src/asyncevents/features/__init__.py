"""Built-in features on the delivery pipeline, each a plugin of its own.

They register through the ``asyncevents`` entry point like any third-party
plugin (``ASYNCEVENTS_DISABLE_PLUGINS=protection`` turns one off) and reach the
kernel only through :mod:`asyncevents.core.pipeline`:

- :mod:`.protection`: circuits, rate limits, ``max_in_flight``, ordering keys,
  auto-disable (the subscriptions' health).
- :mod:`.operational`: the operational events (``asyncevents.delivery.dead``,
  ``asyncevents.subscription.*``), never sent to the subscription they are about.
"""

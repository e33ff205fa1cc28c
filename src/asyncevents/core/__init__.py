"""The core of asyncevents: settings, catalog, store, transports, publish, dispatch, deliver."""

"""The REST API's routes under ``/v1`` (and ``/V1/async_event``), one module per resource."""

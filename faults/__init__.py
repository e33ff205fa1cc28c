"""The fault suite: real workers, real servers, injected failures, and the figures.

``python -m faults.run`` (``make faults``) runs every scenario and prints one
table, fault x transport -> published / delivered / duplicated / lost.
Each scenario is a module with ``run(transport, directory, *, short) -> Row``:

- :mod:`faults.kill`: ``kill -9`` of a worker, several times mid-stream, at the
  default settings, and how soon its messages come back;
- :mod:`faults.idlekill`: ``kill -9`` of a worker on the SQL queue, then a fresh worker
  with ``--max-idle-time 2`` that must deliver what the dead one held before idling out;
- :mod:`faults.broker`: RabbitMQ stopped and started while publishing and delivering;
- :mod:`faults.database`: PostgreSQL restarted while workers run;
- :mod:`faults.receivers`: hanging, resetting and slow receivers beside a fast one;
- :mod:`faults.sigterm`: SIGTERM with deliveries in flight;
- :mod:`faults.diskfull`: the SQLite queue and store on a full, then read-only, disk;
- :mod:`faults.hostile`: poison messages, huge response headers, a 100 MB body;
- :mod:`faults.sinkgone`: a sink plugin uninstalled mid-run;
- :mod:`faults.badlogin`: a worker started with a wrong RabbitMQ password;
- :mod:`faults.wildcard`: a filter ``*a*a*a*a*a*b`` on 3,000 ``a`` and an evil event name
  through ``serve --worker``, whose ``/healthz`` must keep answering;
- :mod:`faults.wrongkey`: a worker started with a wrong ``ASYNCEVENTS_SECRET_KEY``;
- :mod:`faults.quorum`: quorum queues on a three-node RabbitMQ cluster
  (:mod:`faults.cluster`) while nodes are killed and restarted.

Shared pieces: :mod:`faults.receiver` (the webhook receiver),
:mod:`faults.stack` (an installation and its worker processes),
:mod:`faults.services` (outages that always end), :mod:`faults.figures`
(counting and the table).
"""

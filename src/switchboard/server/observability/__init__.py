"""What an operator reads about a running node, from outside it.

- ``metrics.py``: ``GET /metrics`` for Prometheus (``--metrics``): the endpoint, its
  registry and the REST middleware counting requests by route template.
- ``node_metrics.py``: the node's own metric families, read at scrape time from the
  counters the hub, gateway, service, webhooks and broker keep anyway.
- ``process_stats.py``: this process's memory, descriptors, tasks and uptime, for
  ``GET /v1/stats`` (a soak test tells a leak from a steady state with them).

Nothing here is on the fan-out path: every figure is read when it is asked for.
"""

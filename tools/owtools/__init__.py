"""Development and test tooling for octavia-workflows (not shipped).

- services: start Redis, ZooKeeper, MariaDB and RabbitMQ on loopback with
  private data directories, for the functional and e2e test tiers.
- sandbox: a throw-away stock Octavia control plane with no-op drivers.
- standin: a small Nova/Glance stand-in for what no-op drivers lack.
"""

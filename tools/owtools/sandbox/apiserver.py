"""Serve the stock Octavia API (its pecan app) with one thread per request.

``octavia-api`` serves requests one at a time (wsgiref). The sandbox runs
the same WSGI application from ``octavia.api.app.setup_app`` under a
threading wsgiref server, so concurrent clients (a conductor with several
workers, a thread-pool benchmark) are not serialised::

    python -m owtools.sandbox.apiserver --config-file octavia.conf
"""

import signal
import socketserver
import sys
from wsgiref import simple_server

from octavia.api import app as api_app
from oslo_config import cfg


class _ThreadingServer(socketserver.ThreadingMixIn, simple_server.WSGIServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


class _QuietHandler(simple_server.WSGIRequestHandler):
    def log_message(self, format, *args):
        sys.stderr.write(f"{self.address_string()} - {format % args}\n")


def main(argv=None):
    """Load the Octavia config given on the command line and serve."""
    argv = list(sys.argv if argv is None else argv)
    app = api_app.setup_app(argv=argv)
    host = cfg.CONF.api_settings.bind_host
    port = cfg.CONF.api_settings.bind_port
    server = simple_server.make_server(host, port, app,
                                       server_class=_ThreadingServer,
                                       handler_class=_QuietHandler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    sys.stderr.write(f"sandbox API listening on http://{host}:{port}\n")
    sys.stderr.flush()
    try:
        server.serve_forever()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()

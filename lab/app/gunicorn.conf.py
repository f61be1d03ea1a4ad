"""gunicorn configuration of the sample application.

    gunicorn -c /path/to/lab/app/gunicorn.conf.py

Application settings come from the env file (see src/sampleapp/envfile.py); only
the listening address is read here, from GUNICORN_BIND.
"""

import os

_here = os.path.dirname(os.path.abspath(__file__))

wsgi_app = "sampleapp.wsgi:application"
pythonpath = os.path.join(_here, "src")

bind = os.environ.get("GUNICORN_BIND", "127.0.0.21:8000")
workers = 2
worker_class = "sync"
timeout = 30
graceful_timeout = 20
# Each worker loads Django itself, so a restart re-reads the env file (rotated secrets).
preload_app = False

# Access log on stdout, error log on stderr. The request line is logged as method, path
# (without the query string: it may carry tokens) and protocol; no Referer either, since
# it can hold another page's query string.
accesslog = "-"
errorlog = "-"
loglevel = "info"
access_log_format = '%(h)s - %(u)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(B)s %(M)sms "%(a)s"'
proc_name = "sampleapp"
# No gunicornc control socket ($HOME/.gunicorn/gunicorn.ctl): the service user has no
# writable home, and two instances on one host would fight over the same path.
control_socket_disable = True

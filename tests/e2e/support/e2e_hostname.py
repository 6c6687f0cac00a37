"""``[core] hostname_callable`` for the e2e Celery workers: two workers share one machine, and the
task instances' ``hostname`` must say which of them ran each task."""

import os
import socket


def worker_hostname() -> str:
    return os.environ.get("E2E_WORKER_HOSTNAME") or socket.getfqdn()

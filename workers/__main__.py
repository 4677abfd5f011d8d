"""``python -m workers <celery arguments>``: a worker or the beat on the workers' app (what
``smoothguard worker …`` becomes, so the command line never imports Celery or the tasks), exiting
with the worker's code (a GPU worker that cannot serve: ``shared.readiness.EXIT_CANNOT_SERVE``)."""

import sys

from workers.celery_app import run

if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))

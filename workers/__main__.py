"""``python -m workers <celery arguments>``: a worker or the beat on the workers' app (what
``smoothguard worker …`` becomes, so the command line never imports Celery or the tasks)."""

import sys

from workers.celery_app import worker_app

if __name__ == "__main__":
    worker_app().start(sys.argv[1:])

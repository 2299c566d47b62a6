"""``python -m flows <stage>``: a stage as a Prefect flow (:mod:`flows.cli`), in a child of
the fork server when ``$IMPQ_FORKSERVER`` names one that accepts it (:mod:`flows.forkserver`),
else in this process."""

import sys

from flows.forkserver import run_in_server

status = run_in_server(sys.argv[1:])
if status is None:  # no fork server (or it declined): run here
    from flows.cli import main

    status = main()
raise SystemExit(status)

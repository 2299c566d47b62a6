import sys

from impq.forkserver import run_in_server

status = run_in_server(sys.argv[1:])
if status is None:  # no fork server (or it declined): run here
    from impq.cli import main

    status = main()
raise SystemExit(status)

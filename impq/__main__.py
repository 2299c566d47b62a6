"""``python -m impq <stage>``: one stage in this process, without Prefect
(:mod:`impq.pipeline.cli`); ``python -m flows <stage>`` runs it as a Prefect flow."""

from impq.pipeline.cli import main

raise SystemExit(main())

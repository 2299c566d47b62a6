"""``python -m impq.llamacpp build [--jobs N] | dir`` (:func:`impq.llamacpp.build.main`)."""

from impq.llamacpp.build import main

raise SystemExit(main())

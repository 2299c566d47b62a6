from impq.cli import main

raise SystemExit(main())

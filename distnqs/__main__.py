from distnqs.cli import main

raise SystemExit(main())

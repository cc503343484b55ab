from aimi.cli import main

raise SystemExit(main())

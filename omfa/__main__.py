from omfa.cli import main

raise SystemExit(main())

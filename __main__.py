from rftgym.cli import main

raise SystemExit(main())

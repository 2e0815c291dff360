from phylovi.cli import main

raise SystemExit(main())

from mrharmony.cli import main

raise SystemExit(main())

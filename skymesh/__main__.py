from skymesh.cli import main

raise SystemExit(main())

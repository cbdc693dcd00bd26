from skymesh.cli.main import main

raise SystemExit(main())

from meshlet.e2e.apps.flakygrpc.app import main

raise SystemExit(main())

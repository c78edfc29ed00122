"""``python -m persam_studio`` runs the command line / app entry point."""

from persam_studio.cli import main

raise SystemExit(main())

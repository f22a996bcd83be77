"""``python -m tidal`` runs the command line."""

from tidal.cli.main import main

if __name__ == "__main__":
    raise SystemExit(main())

"""`python -m streams` runs the gemba command line."""

from streams.cli.main import main

main()

"""`python -m streams` runs the gemba command line."""

from streams.cli import main

main()

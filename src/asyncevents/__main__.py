"""``python -m asyncevents``."""

from asyncevents.cli import main

main()

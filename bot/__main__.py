"""`python -m bot` runs the same CLI as the `protest-bot` console script."""

from bot.cli import main

main()

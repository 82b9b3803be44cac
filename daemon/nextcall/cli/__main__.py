"""``python -m nextcall.cli``: the command line without the entry point's early read."""

from . import main

main()

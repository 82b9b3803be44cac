"""nextcall: which record should this agent call next?

The package is split in a pure, synchronous core (``nextcall.core``) and an asyncio shell
around it (server, storage, config, CLI). The core never imports the shell.
"""

__version__ = "0.1.0"

"""Developer tools: the ``aiges`` command line and its subcommands (create, pack, check, config,
-init, -mnist).  They run in the developer's shell, never inside the loader or a plugin worker."""

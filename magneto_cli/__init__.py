"""The ``magneto`` console command: composes the subcommands of the project's packages."""

"""The ``magneto`` console command (``magneto.cli``): one module per group of subcommands.

It only composes the packages: it parses flags, calls the library, ``magneto.training``,
``magneto.pretraining`` and ``magneto.service``, and turns their errors into one line and an
exit status. Heavy imports happen inside the subcommand that needs them.
"""

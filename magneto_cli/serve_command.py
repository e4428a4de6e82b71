"""``magneto serve``: the REST API (flags override ``MAGNETO_*`` environment variables)."""

from __future__ import annotations

import argparse

from magneto_cli.config_flags import _metavar


def register(subparsers: argparse._SubParsersAction) -> None:
    from service.settings import ServiceSettings

    cmd = subparsers.add_parser(
        "serve",
        help="serve a checkpoint over HTTP (REST API, docs at /docs, page at /)",
        description="Serve a checkpoint. Every flag can also be set as an environment "
        "variable MAGNETO_<FLAG> (e.g. MAGNETO_API_KEY); flags win.",
    )
    for name, info in ServiceSettings.model_fields.items():
        flag = "--" + name.replace("_", "-")
        default = info.get_default(call_default_factory=True)
        help_text = f"{info.description or ''} [env MAGNETO_{name.upper()}; default: {default}]"
        cmd.add_argument(
            flag,
            dest=f"svc__{name}",
            default=argparse.SUPPRESS,
            metavar=_metavar(info.annotation),
            help=help_text.strip(),
        )
    cmd.set_defaults(handler=run_serve)


def run_serve(args: argparse.Namespace) -> int:
    from service import serve

    overrides = {k[len("svc__") :]: v for k, v in vars(args).items() if k.startswith("svc__")}
    serve(**overrides)
    return 0

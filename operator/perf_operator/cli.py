"""The ``perf-operator`` command: run the operator, generate the CRDs, the field reference and
the Grafana dashboard of profiles and tenants, bring up the local stack."""
from __future__ import annotations

import argparse
import asyncio
import importlib
import pathlib
import sys

DEFAULT_WEBHOOK_CONFIGURATION = "perf-operator.perf.idp.io"


def _run(args: argparse.Namespace) -> int:
    import kopf
    import uvloop

    from . import entry  # noqa: F401  (registers every handler)
    from .config import operator_namespace
    from .handlers import startup
    from .logs import configure_logging
    from .targets import policy

    configure_logging(args.log_format, verbose=args.verbose)
    hosts = (args.inline_hosts.split(",") if args.inline_hosts is not None
             else policy.env_list(policy.INLINE_HOSTS_ENV))
    policy.configure(policy.ConnectionPolicy.from_settings(
        args.allow_inline_connections or policy.env_flag(policy.ALLOW_INLINE_ENV), hosts))
    operator_namespace()  # read once, before the event loop starts
    startup.namespaces = tuple(args.namespace)
    if args.webhook_listen:
        startup.webhook = _webhook_options(args)
    # uvloop's event loop (as kopf's own CLI picks when it is installed): the operator's work
    # per watch event is mostly the loop's (socket writes, callbacks, timers).
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        kopf.run(
            loop=runner.get_loop(),
            clusterwide=not args.namespace,
            namespaces=args.namespace or (),
            standalone=args.standalone,
            priority=args.priority,
            peering_name=args.peering,
            liveness_endpoint=args.liveness,
        )
    return 0


def _webhook_options(args: argparse.Namespace):
    """Service mode (``--webhook-service``, a cluster) or URL mode (the local stack: the API
    server calls ``https://<--webhook-host or the listen address>:<port>``)."""
    from .admission.server import WebhookOptions
    from .admission.tls import ServingFiles
    from .config import operator_namespace

    addr, _, port = args.webhook_listen.rpartition(":")
    given = (args.webhook_cert, args.webhook_key, args.webhook_ca)
    if any(given) and not all(given):
        raise SystemExit("--webhook-cert, --webhook-key and --webhook-ca go together")
    if not args.webhook_service and not all(given):
        raise SystemExit("--webhook-listen needs --webhook-service, or --webhook-cert, "
                         "--webhook-key and --webhook-ca")
    url = None if args.webhook_service else f"https://{args.webhook_host or addr}:{port}"
    return WebhookOptions(
        addr=addr, port=int(port), configuration=args.webhook_configuration, url=url,
        service=args.webhook_service,
        service_namespace=operator_namespace(),
        files=ServingFiles(*map(pathlib.Path, given)) if all(given) else None)


#: The files generated from the code, each a subcommand writing them or, with ``--check``,
#: failing when they differ: name -> (help, output option, default output, what it is made
#: from, the ``module:function`` doing it, imported when run).
GENERATORS = {
    "crds": ("generate crds/*.yaml from the models", "--output-dir", "crds", "the models",
             "perf_operator.api.crdgen:main_crds"),
    "docs": ("generate docs/reference.md (every field) from the models", "--output",
             "docs/reference.md", "the models", "perf_operator.api.reference:main_docs"),
    "dashboards": ("generate the Grafana dashboard of profiles and tenants from the "
                   "optimizer's signals", "--output",
                   "manifests/grafana/perf-profile-dashboard.json", "the signals",
                   "perf_operator.insight.dashboard:main_dashboards"),
}


def _generate(args: argparse.Namespace) -> int:
    module, _, function = GENERATORS[args.command][4].partition(":")
    generate = getattr(importlib.import_module(module), function)
    return generate(pathlib.Path(args.output), check=args.check)


def _dev(args: argparse.Namespace) -> int:
    from .devstack.demo import run_demo

    return run_demo(examples=pathlib.Path(args.examples), keep_running=not args.once,
                    argocd=args.argocd)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="perf-operator", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the operator against the current kubeconfig")
    run.add_argument("-n", "--namespace", action="append", default=[],
                     help="watch only this namespace (repeatable); default: all namespaces")
    run.add_argument("--standalone", action="store_true",
                     help="no peering with other instances (single replica only)")
    run.add_argument("--priority", type=int, default=0, help="kopf peering priority")
    run.add_argument("--peering", default=None, help="kopf peering object name")
    run.add_argument("--liveness", default=None,
                     help="health endpoint, e.g. http://0.0.0.0:8081/healthz")
    run.add_argument("--webhook-listen", metavar="ADDR:PORT",
                     help="serve the validating admission webhook here")
    run.add_argument("--webhook-service", metavar="NAME",
                     help="the API server calls the webhook through this Service in the "
                          "operator's namespace (every replica behind it); without "
                          "--webhook-cert, the replicas share a generated certificate kept "
                          "in the Secret NAME-tls")
    run.add_argument("--webhook-host", help="host name the API server calls the webhook by "
                                            "(without --webhook-service)")
    run.add_argument("--webhook-cert", help="TLS certificate (PEM) of the webhook")
    run.add_argument("--webhook-key", help="TLS private key (PEM) of the webhook")
    run.add_argument("--webhook-ca", help="CA bundle (PEM) the API server verifies it with")
    run.add_argument("--log-format", choices=("text", "json"), default="text",
                     help="text (default) or json: one JSON object per line with timestamp, "
                          "level, logger, message, and the object's namespace, name, kind and "
                          "reason when known")
    run.add_argument("--allow-inline-connections", action="store_true",
                     help="accept profiles that write their own connections (database/redis "
                          "connection, prometheus) instead of a PerformanceTarget, to hosts on "
                          "--inline-hosts only: for single-namespace installs and the dev "
                          "stack (env PERF_OPERATOR_ALLOW_INLINE_CONNECTIONS=1)")
    run.add_argument("--inline-hosts", metavar="HOST[,HOST...]",
                     help="where inline connections may go: IP addresses, CIDRs, host names, "
                          "*.suffix, each optionally :port (env PERF_OPERATOR_INLINE_HOSTS); "
                          "link-local and metadata addresses are refused regardless")
    run.add_argument("--webhook-configuration", default=DEFAULT_WEBHOOK_CONFIGURATION,
                     help="name of the ValidatingWebhookConfiguration the replicas keep")
    run.add_argument("--verbose", action="store_true")
    run.set_defaults(func=_run)

    for name, (summary, option, default, source, _) in GENERATORS.items():
        generator = sub.add_parser(name, help=summary)
        generator.add_argument(option, dest="output", default=default)
        generator.add_argument("--check", action="store_true",
                               help=f"fail if the output differs from what {source} generate")
        generator.set_defaults(func=_generate)

    dev = sub.add_parser("dev", help="bring up the local stack and run the operator on examples/")
    dev.add_argument("--examples", default="examples")
    dev.add_argument("--once", action="store_true",
                     help="stop after the examples are Ready instead of running until Ctrl-C")
    dev.add_argument("--argocd", action="store_true",
                     help="also run Argo CD headless (application controller, repo-server)")
    dev.set_defaults(func=_dev)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())

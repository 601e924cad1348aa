"""VaxChannel command line. `python main.py --help` lists the commands; README.md explains them."""

from __future__ import annotations

import argparse
import sys

from settings import Settings, main_command


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn

    from app import channel_auth_lines
    from db.migrate import migrate
    from db.private_files import protect_data_dir
    from registry_client.embedded.demo import ensure_demo_data
    from web.structured_logs import configure_logging

    configure_logging(settings)  # resolves (generates at first start) the channel secrets too
    protect_data_dir(settings.data_dir)  # umask 077, DATA_DIR 0700 (tightened, with a log line)
    migrate(settings.database_url)
    if settings.registry_backend == "embedded" and not args.no_demo:
        loaded = ensure_demo_data(settings)
        if loaded:
            print(f"Loaded the demo data set ({loaded} persons). See README.md for the demo identities.")
    base = settings.public_base_url.rstrip("/")
    local_telegram = args.workers <= 1 and not settings.telegram_bot_token
    simulate = main_command("simulate", "ussd", "--phone", "+84901234567")
    print(
        f"VaxChannel on http://{settings.host}:{settings.port}\n"
        f"  agent console : {base}/agent/\n"
        f"  verify page   : {base}/verify\n"
        f"  API docs      : {base}/docs\n"
        f"  health        : {base}/healthz\n"
        f"  simulator     : {simulate}   (or sms / telegram / voice / whatsapp)\n"
        f"  outbound SMS  : {'Twilio' if settings.twilio_enabled else 'local outbox (shown by the simulator and console)'}\n"
        "Callers of each channel are authenticated by:\n"
        + "\n".join(channel_auth_lines(settings, local_telegram)),
        flush=True,
    )
    if args.workers > 1:
        uvicorn.run(
            "app:app_from_environment",
            factory=True,
            host=settings.host,
            port=settings.port,
            workers=args.workers,
            log_config=None,
            access_log=False,  # the app writes its own (ACCESS_LOG)
        )
    else:
        from app import create_app

        app = create_app(settings, local_telegram=local_telegram)
        app.state.single_process = True  # USSD navigation in this process's memory (MemoryHotState)
        uvicorn.run(app, host=settings.host, port=settings.port, log_config=None, access_log=False)
    return 0


def _import_doses(settings: Settings, args: argparse.Namespace) -> int:
    from registry_client.embedded.importer import run_import_cli

    return run_import_cli(settings, args.file, as_json=args.json)


def _simulate(settings: Settings, args: argparse.Namespace) -> int:
    if args.channel == "telegram":
        from bot.simulator import run_simulator as run_telegram

        return run_telegram(settings, args.phone, args.url)
    from sms_gateway.simulator import run_simulator

    return run_simulator(settings, args.channel, args.phone, args.url)


def _create_user(settings: Settings, args: argparse.Namespace) -> int:
    from web.console.users import create_user_cli

    return create_user_cli(settings, args.name, args.role, args.site, args.password_stdin)


def _certificate(settings: Settings, args: argparse.Namespace) -> int:
    from web.certificate_cli import certificate_cli

    return certificate_cli(settings, args.national_id, args.date_of_birth, args.png)


def _keys(settings: Settings, args: argparse.Namespace) -> int:
    from certificates.cli import keys_cli

    return keys_cli(settings, args.action)


def _trust(settings: Settings, args: argparse.Namespace) -> int:
    from certificates.cli import trust_cli

    return trust_cli(settings, args.action, args.file)


def _registry(settings: Settings, args: argparse.Namespace) -> int:
    from registry_client.check import registry_check_cli

    return registry_check_cli(settings)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python main.py", description=__doc__)
    sub = parser.add_subparsers(dest="command")

    serve = sub.add_parser("serve", help="run the HTTP service (the default)")
    serve.add_argument("--no-demo", action="store_true", help="do not load the demo data set")
    serve.add_argument("--workers", type=int, default=1, help="uvicorn worker processes (PostgreSQL for >1)")
    serve.set_defaults(func=_serve)

    imp = sub.add_parser(
        "import-doses",
        help="import persons and doses from a CSV file (columns: docs/import-file.md)",
        description="Import persons and doses from a CSV file (columns and rules: docs/import-file.md). "
        "Idempotent; rejected rows go to FILE.rejected.csv. Exit 0 when the file was processed, even with "
        "rejected rows.",
    )
    imp.add_argument("file")
    imp.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    imp.set_defaults(func=_import_doses)

    sim = sub.add_parser("simulate", help="an interactive phone in the terminal")
    sim.add_argument("channel", choices=["ussd", "sms", "telegram", "voice", "whatsapp"])
    sim.add_argument("--phone", required=True, help="the simulated phone number, e.g. +84901234567")
    sim.add_argument("--url", default=None, help="service base URL (default PUBLIC_BASE_URL)")
    sim.set_defaults(func=_simulate)

    user = sub.add_parser("create-user", help="create a console user")
    user.add_argument("name")
    user.add_argument("--role", required=True, choices=["agent", "site", "admin"])
    user.add_argument("--site", default=None, help="site code (role site)")
    user.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    user.set_defaults(func=_create_user)

    cert = sub.add_parser("certificate", help="issue a person's certificate (prints the HC1 string)")
    cert.add_argument("national_id")
    cert.add_argument("date_of_birth", help="DDMMYYYY or YYYY-MM-DD")
    cert.add_argument("--png", default=None, help="also write the QR code PNG here")
    cert.set_defaults(func=_certificate)

    keys = sub.add_parser("keys", help="document-signer keys")
    keys.add_argument("action", choices=["rotate", "list"])
    keys.set_defaults(func=_keys)

    trust = sub.add_parser("trust", help="foreign document-signer certificates for /api/verify")
    trust.add_argument("action", choices=["add", "list"])
    trust.add_argument("file", nargs="?", default=None)
    trust.set_defaults(func=_trust)

    reg = sub.add_parser("registry", help="the configured registry")
    reg.add_argument("action", choices=["check"])
    reg.set_defaults(func=_registry)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = list(argv or [])
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help")):
        argv = ["serve", *argv]  # `python main.py [--no-demo] [--workers N]` is `serve`
    args = parser.parse_args(argv)
    try:
        settings = Settings()
    except Exception as exc:  # pydantic's message names the bad variable
        print(f"Configuration error: {exc}", file=sys.stderr)
        return 2
    return int(args.func(settings, args))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

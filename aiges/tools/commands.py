"""Subcommands of ``aiges`` / ``python -m aiges``: the parser and the dispatch to their modules
(:mod:`~aiges.tools.scaffold` create/-mnist, :mod:`~aiges.tools.pack`, :mod:`~aiges.tools.check`,
:mod:`~aiges.tools.config_cmd`)."""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from aiges import __version__
from aiges.tools.config_cmd import config_cmd
from aiges.tools.pack import pack
from aiges.tools.scaffold import MNIST_DIR, create, mnist


def check(args: argparse.Namespace) -> int:
    from aiges.tools.check import main as check_main
    return check_main(args.directory, session_wait=args.session_wait)



# ---------------------------------------------------------------- dispatch
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="aiges", description=f"aiges {__version__} project commands")
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("create", help="scaffold a wrapper project that serves and passes check as is")
    c.add_argument("-n", "--name", default="wrapperDemo", help="project and service name (default wrapperDemo)")
    c.add_argument("-p", "--path", default=".", help="parent directory (default .)")
    c.add_argument("--force", action="store_true", help="overwrite the template files of an existing project")
    c.add_argument("--lang", choices=("python", "c"), default="python",
                   help="python: a wrapper.py; c: a C engine (libwrapper.so to upstream's C interface, built with make)")
    c.set_defaults(run=create)
    k = sub.add_parser("pack", help="pack a project into a .tar.gz, directory structure kept")
    k.add_argument("-l", "--location", default=".", help="project directory (default .)")
    k.add_argument("-o", "--output", default="pywrapper.tar.gz", help="archive to write (default ./pywrapper.tar.gz)")
    k.set_defaults(run=pack)
    h = sub.add_parser("check", help="run the wrapper with its declared test values; pass/fail with fixes")
    h.add_argument("directory", nargs="?", default=".", help="project or wrapper directory (default .)")
    h.add_argument("--session-wait", type=float, default=10.0, metavar="SECONDS",
                   help="how long to wait for a session's last result (default 10)")
    h.set_defaults(run=check)
    g = sub.add_parser("config", help="show, get or set aiges.toml values")
    g.add_argument("action", choices=("show", "get", "set"))
    g.add_argument("key", nargs="?", default="", help="SECTION.KEY, e.g. aiges.workers")
    g.add_argument("value", nargs="?", default=None, help="the value to set (TOML literal or plain text)")
    g.add_argument("-c", "--config", default="aiges.toml", help="config file (default aiges.toml)")
    g.add_argument("-s", "--service", default="svcName", help="service section name (default svcName)")
    g.set_defaults(run=config_cmd)
    m = sub.add_parser("mnist", help="write and train the digit-recognition demo (offline)")
    m.add_argument("-p", "--path", default=MNIST_DIR, help=f"where (default ./{MNIST_DIR})")
    m.add_argument("--force", action="store_true", help="overwrite the demo files of an existing demo and retrain")
    m.set_defaults(run=mnist)
    return p


def main(argv: Sequence[str]) -> int:
    args = _parser().parse_args(list(argv))
    if args.command == "config":
        if args.action in ("get", "set") and not args.key:
            sys.stderr.write(f"aiges config {args.action}: SECTION.KEY is required\n")
            return 2
        if args.action == "set" and args.value is None:
            sys.stderr.write("aiges config set: VALUE is required (aiges config set SECTION.KEY VALUE)\n")
            return 2
    return int(args.run(args))

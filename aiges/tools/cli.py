"""The ``aiges`` command line (also ``python -m aiges``): upstream's AIservice flags plus subcommands.

Flags use Go's single-dash style as upstream (``-m 0`` and ``-m=0``; ``-init``, ``-mnist``, ``-v``).
Subcommands (``create``, ``pack``, ``check``) follow ``python -m aiges`` of the upstream SDK.
"""
from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from aiges import __version__
from aiges.tools.defaults import write_default_config

USAGE = """\
aiges {version}: serve a wrapper.py as an AIGES-compatible service

usage:
  aiges -init                               write a default ./aiges.toml
  aiges -m 0 [-c aiges.toml] [-s svcName]   run the service locally (HTTP on [wrapper] http_listen)
        [--wrapper-dir DIR]                 serve DIR/wrapper.py (wins over AIGES_WRAPPER_DIR, [aiges] wrapperDir)
  aiges -mnist [--force]                    write a digit-recognition demo into ./aiges_demo/mnist
  aiges -v | --version                      print the version
  aiges create -n NAME [-p PATH] [--force]  scaffold a wrapper project
  aiges create --lang c -n NAME             scaffold a C engine (libwrapper.so, upstream's C interface)
  aiges pack [-l DIR] [-o FILE]             pack a project into a .tar.gz
  aiges check [DIR]                         run a wrapper's declared test values and validate it
"""

SUBCOMMANDS = ("create", "pack", "check", "config")


def _normalise(argv: Sequence[str]) -> list[str]:
    """Go's flag package accepts -m=0 and --m=0; argparse needs them split."""
    out: list[str] = []
    for a in argv:
        if a.startswith("-") and "=" in a and not a.startswith("--version"):
            flag, value = a.split("=", 1)
            out += ["-" + flag.lstrip("-"), value]
        elif a.startswith("--") and a[2:] in ("init", "mnist", "force", "m", "c", "s"):
            out.append(a[1:])
        else:
            out.append(a)
    return out


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="aiges", add_help=True, usage=USAGE.format(version=__version__))
    p.add_argument("-init", action="store_true", help="write a default ./aiges.toml if absent")
    p.add_argument("-mnist", action="store_true", help="write the digit-recognition demo project")
    p.add_argument("-force", action="store_true", help="with -mnist: overwrite an existing demo")
    p.add_argument("-m", dest="mode", type=int, default=-1, help="config mode: 0 = local file")
    p.add_argument("-c", dest="config", default="", help="config file (default aiges.toml)")
    p.add_argument("-s", dest="service", default="", help="service name = config section (default svcName)")
    p.add_argument("--wrapper-dir", "-wrapperDir", "-wrapper-dir", dest="wrapper_dir", default=None,
                   help="directory of wrapper.py (relative to the working directory)")
    for flag in ("-p", "-g", "-u", "-dc"):  # config-centre flags: accepted, meaningless locally
        p.add_argument(flag, default="", help=argparse.SUPPRESS)
    p.add_argument("-v", "--version", action="store_true", help="print the version")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args_in = list(sys.argv[1:] if argv is None else argv)
    if not args_in:
        sys.stdout.write(USAGE.format(version=__version__))
        return 0
    if args_in[0] in SUBCOMMANDS:
        from aiges.tools import commands
        return commands.main(args_in)
    args = _parser().parse_args(_normalise(args_in))
    if args.version:
        print(f"aiges {__version__}")
        return 0
    if args.init:
        if write_default_config():
            print("Generating default cfg... wrote ./aiges.toml")
        else:
            print("./aiges.toml exists; left unchanged")
        return 0
    if args.mnist:
        from aiges.tools import commands
        return commands.main(["mnist"] + (["--force"] if args.force else []))
    if args.mode != 0:
        sys.stderr.write("only local mode -m 0 is supported" + (" (missing -m 0)" if args.mode == -1 else "") + "\n")
        return 2
    config_path = args.config or "aiges.toml"
    if not os.path.exists(config_path):
        try:
            write_default_config(config_path)
        except OSError as e:
            sys.stderr.write(f"aiges: {config_path} does not exist and cannot be created ({e.strerror}); "
                             "give -c an existing file, or a path in an existing directory\n")
            return 2
        sys.stderr.write(f"{config_path} did not exist: wrote the default configuration\n")
    from aiges import config
    try:
        settings = config.load(config_path, args.service or "svcName", wrapper_dir=args.wrapper_dir)
    except config.ConfigError as e:
        sys.stderr.write(f"aiges: config error: {e}\n")
        return 2
    from aiges.loader.main import run
    return run(settings)

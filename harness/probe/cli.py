"""The probe's command line: serve, connect, info, session (JSON lines on stdout).

Stdlib only, Python >= 3.8. argparse is imported only for the one-shot commands: the resident
session (the one process started per node per run) parses its own two options.
"""
import sys

from .client import connect_once
from .common import EXIT_REFUSED, Refused
from .facts import info_facts
from .hybrid import make_listener
from .protocol import Event, answer_line, is_listening
from .session import run_session
from .sockets import SOCKET_TYPES, windows_python_problem


def emit(obj):
    sys.stdout.write(answer_line(obj) + "\n")
    sys.stdout.flush()


def build_parser():
    import argparse
    p = argparse.ArgumentParser(prog="probe.py", description="hvsock-matrix probe (JSON lines on stdout)")
    sub = p.add_subparsers(dest="command")

    def common(sp, with_target=True):
        sp.add_argument("--lab-node", action="store_true", help="allow AF_VSOCK (lab nodes only)")
        if with_target:
            sp.add_argument("--family", required=True, choices=["tcp", "vsock", "hyperv", "hybrid"])
            sp.add_argument("--addr", required=True, help="CID integer, GUID or IPv4")
            sp.add_argument("--port", required=True, type=int)
            sp.add_argument("--service", default=None, help="Hyper-V service GUID (default: vsock template)")
            sp.add_argument("--socket", default="stream", choices=sorted(SOCKET_TYPES), help="socket type")

    s = sub.add_parser("serve")
    common(s)
    s.add_argument("--count", type=int, default=1)
    s.add_argument("--timeout", type=float, default=30.0)
    c = sub.add_parser("connect")
    common(c)
    c.add_argument("--payload", required=True)
    c.add_argument("--timeout", type=float, default=10.0)
    c.add_argument("--connect-timeout", type=float, default=None)
    i = sub.add_parser("info")
    common(i, with_target=False)
    se = sub.add_parser("session")
    common(se, with_target=False)
    se.add_argument("--idle-timeout", type=float, default=900.0)
    return p


class _SessionArgs(object):
    command = "session"
    idle_timeout = 900.0
    lab_node = False


def parse_session_args(argv):
    """`session [--idle-timeout T] [--lab-node]` without argparse (fewer imports: faster start on
    nested guests, where the session is the one process started per node per run); None if not that."""
    if not argv or argv[0] != "session":
        return None
    args = _SessionArgs()
    rest = list(argv[1:])
    while rest:
        word = rest.pop(0)
        if word == "--lab-node":
            args.lab_node = True
        elif word == "--idle-timeout" and rest:
            args.idle_timeout = float(rest.pop(0))
        elif word.startswith("--idle-timeout="):
            args.idle_timeout = float(word.split("=", 1)[1])
        else:
            return None  # let argparse explain
    return args


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = parse_session_args(argv)
    except ValueError:
        args = None
    if args is None:
        args = build_parser().parse_args(argv)
    problem = windows_python_problem()
    if problem and args.command in ("serve", "connect", "session"):  # `info` still answers, for the doctor
        emit({"event": Event.ERROR, "message": problem})
        return 2
    try:
        if args.command == "serve":
            listener = make_listener(args.family, args.addr, args.port, args.service, args.count, args.timeout,
                                args.lab_node, emit=emit, kind=args.socket)
            event = listener.open()
            emit(event)
            if not is_listening(event):
                return 1
            listener.serve()
            emit({"event": Event.DONE, "accepted": listener.accepted, "peers": listener.peers})
            return 0
        if args.command == "connect":
            result = connect_once(args.family, args.addr, args.port, args.service, args.payload, args.timeout,
                                  args.connect_timeout, args.lab_node, args.socket)
            emit(result)
            return 0 if result["outcome"] == "O" else 1
        if args.command == "info":
            emit(info_facts(args.lab_node))
            return 0
        if args.command == "session":
            return run_session(args)
    except Refused as exc:
        emit({"event": Event.REFUSED, "message": str(exc)})
        return EXIT_REFUSED
    except ValueError as exc:
        emit({"event": Event.ERROR, "message": str(exc)})
        return 2
    build_parser().print_usage(sys.stderr)
    return 2

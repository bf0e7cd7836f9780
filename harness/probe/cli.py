"""The probe's command line: serve, connect, info, session (JSON lines on stdout).

Stdlib only, Python >= 3.8. argparse is imported only for the one-shot commands: the resident
session (the one process started per node per run) parses its own two options.
"""
import sys

from .client import connect_once
from .common import EXIT_REFUSED, Refused
from .facts import info_facts
from .hybrid import make_listener
from .protocol import Event, answer_line, is_listening, is_services
from .registry import services_answer
from .session import run_session
from .sockets import SOCKET_TYPES, windows_python_problem


def emit(obj):
    sys.stdout.write(answer_line(obj) + "\n")
    sys.stdout.flush()


def build_parser():
    import argparse
    p = argparse.ArgumentParser(prog="probe.pyz", description="hvsock-matrix probe (JSON lines on stdout)")
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
    s.add_argument("--stop-on-eof", action="store_true", help="stop listening when stdin reaches EOF")
    s.add_argument("--stop-file", default=None, help="stop listening once this file exists (the controller "
                                                     "writes it where it holds no stdin: psexec)")
    s.add_argument("--timeout", type=float, default=30.0)
    s.add_argument("--phase", default="listening", choices=["listening", "bound", "none", "closed"])
    s.add_argument("--unprivileged", action="store_true", help="socket() and bind() as nobody")
    c = sub.add_parser("connect")
    common(c)
    payload = c.add_mutually_exclusive_group(required=True)
    payload.add_argument("--payload")
    payload.add_argument("--payload-hex", help="the payload as hex of its UTF-8 (any text, on any command line)")
    c.add_argument("--timeout", type=float, default=10.0)
    c.add_argument("--connect-timeout", type=float, default=None)
    c.add_argument("--phase", default="connect", choices=["connect", "retry", "bound", "second-cid"])
    c.add_argument("--first-addr", default=None, help="second-cid: the CID connected to first")
    c.add_argument("--first-port", type=int, default=None, help="retry: the port of the failing first connect")
    i = sub.add_parser("info")
    common(i, with_target=False)
    sv = sub.add_parser("services", help="Hyper-V service GUID registration (Windows hosts, winreg)")
    common(sv, with_target=False)
    sv.add_argument("action", choices=["register", "unregister", "list"])
    sv.add_argument("items", nargs="*", help="GUIDs, vsock ports or port ranges (19000-19099)")
    sv.add_argument("--owner", default=None, help="the controller run's owner tag")
    se = sub.add_parser("session")
    common(se, with_target=False)
    se.add_argument("--idle-timeout", type=float, default=900.0)
    return p


class _SessionArgs:
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


def parse_args(argv):
    """The one-shot command line as argparse reads it, with --payload-hex decoded into payload."""
    args = build_parser().parse_args(argv)
    if getattr(args, "payload_hex", None):
        args.payload = bytes.fromhex(args.payload_hex).decode("utf-8")
    return args


def stop_on_eof(listener):
    """Stop `listener` when stdin closes: how the controller ends a one-shot server without a kill."""
    import threading

    def watch():
        try:
            while sys.stdin.readline():
                pass
        except (OSError, ValueError):
            pass
        listener.stop(wait=0)

    threading.Thread(target=watch, name="stdin-eof", daemon=True).start()


def stop_on_file(listener, path, poll=0.2):
    """Stop `listener` once `path` exists: a stop the controller sends as bytes (SMB), never a kill."""
    import os
    import threading

    def watch():
        while not listener.finished.wait(poll):
            if os.path.exists(path):
                listener.stop(wait=0)
                return

    threading.Thread(target=watch, name="stop-file", daemon=True).start()


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = parse_session_args(argv)
    except ValueError:
        args = None
    if args is None:
        args = parse_args(argv)
    problem = windows_python_problem()
    if problem and args.command in ("serve", "connect", "session"):  # `info` still answers, for the doctor
        emit({"event": Event.ERROR, "message": problem})
        return 2
    try:
        if args.command == "serve":
            listener = make_listener(args.family, args.addr, args.port, args.service, args.count, args.timeout,
                                     args.lab_node, emit=emit, kind=args.socket, phase=args.phase,
                                     unprivileged=args.unprivileged)
            event = listener.open()
            emit(event)
            if not is_listening(event):
                return 1
            if args.stop_on_eof:
                stop_on_eof(listener)
            if args.stop_file:
                stop_on_file(listener, args.stop_file)
            listener.serve()
            emit({"event": Event.DONE, "accepted": listener.accepted, "peers": listener.peers})
            return 0
        if args.command == "connect":
            result = connect_once(args.family, args.addr, args.port, args.service, args.payload, args.timeout,
                                  args.connect_timeout, args.lab_node, args.socket, args.phase, args.first_addr,
                                  args.first_port)
            emit(result)
            return 0 if result["outcome"] == "O" else 1
        if args.command == "info":
            emit(info_facts(args.lab_node))
            return 0
        if args.command == "services":
            answer = services_answer(args.action, args.items, args.owner)
            emit(answer)
            return 0 if is_services(answer) else 1
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

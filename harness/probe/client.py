"""The client side: connect, send, read the echo; the result event.

Stdlib only, Python >= 3.8.
"""
import contextlib
import socket
import time

from .common import MAX_READ, REPLY_PREFIX, Refused, errno_name, now_ms, timeout_errno
from .protocol import Event
from .sockets import SEQPACKET_MESSAGES, make_socket, os_error_fields, peer_text, set_connect_timeout, sock_address

# client.phase, each after a tools/testing/vsock/vsock_test.c case: connect (default); retry: a
# failed connect first, then connect again on the same socket ("SOCK_STREAM retry failed
# connect()"); bound: an explicit bind(ANY, ANY) before connect ("SOCK_STREAM double bind connect"
# binds before it connects); second-cid: connect to another CID first, then the target on the same
# socket, so the socket changes transport ("SOCK_STREAM transport change null-ptr-deref")
PHASE_CONNECT, PHASE_RETRY, PHASE_BOUND, PHASE_SECOND_CID = "connect", "retry", "bound", "second-cid"
CLIENT_PHASES = (PHASE_CONNECT, PHASE_RETRY, PHASE_BOUND, PHASE_SECOND_CID)
VMADDR_CID_ANY = VMADDR_PORT_ANY = 0xFFFFFFFF
VMADDR_CID_HYPERVISOR = 0  # vsock_test's transport change connects to CID 0 ("Set CID to 0 cause a transport change")
RETRY_PORT = 1  # a port nothing listens on, for retry's failing first connect
FIRST_CONNECT_TIMEOUT = 2.0  # seconds; the first connect of retry / second-cid is expected to fail


def first_step(sock, family, phase, addr, port, service, first_addr, first_port, connect_timeout):
    """What retry / bound / second-cid do on the socket before the real connect: a dict for "first".

    "outcome": "E" in it when the step did what it must not (a first connect that succeeded);
    an OSError from bind() propagates (the kernel's answer: X at phase bind).
    """
    if phase == PHASE_BOUND:
        local = (VMADDR_CID_ANY, VMADDR_PORT_ANY) if family == "vsock" else ("::" if ":" in str(addr) else "", 0)
        sock.bind(local)
        return {"step": "bind", "local": peer_text(family, sock.getsockname())}
    if phase == PHASE_RETRY:
        where = (addr, RETRY_PORT if first_port is None else int(first_port))
    else:
        where = (VMADDR_CID_HYPERVISOR if first_addr is None else first_addr, port)
    first = {"step": "connect", "addr": str(where[0]), "port": int(where[1])}
    wait = min(FIRST_CONNECT_TIMEOUT, connect_timeout)
    set_connect_timeout(sock, family, wait)
    # blocking, as vsock_test connects: a non-blocking connect() that failed leaves an AF_VSOCK socket
    # SS_CONNECTING, and the next connect() answers EALREADY (af_vsock.c vsock_connect()); the kernel's
    # own connect timeout (set just above) bounds the wait. TCP has no such option: a Python timeout.
    sock.settimeout(None if family in ("vsock", "hyperv") else wait + 1.0)
    start = time.monotonic()
    try:
        sock.connect(sock_address(family, where[0], where[1], service))
    except OSError as exc:
        first.update(os_error_fields(exc))
        first["elapsed_ms"] = now_ms(start)
        set_connect_timeout(sock, family, connect_timeout)
        return first
    first.update({"outcome": "E", "message": f"the first connect of {phase} succeeded (something listens at {where[0]} port {where[1]})"})
    return first


def connect_once(family, addr, port, service=None, payload="World!", timeout=10.0, connect_timeout=None,
                 lab_node=False, kind="stream", phase=PHASE_CONNECT, first_addr=None, first_port=None):
    """Connect, send, read the echo: the result event.

    X only when the node refused the connection: connect() failed, or -- for a non-stream type --
    socket() refused the type, or a datagram could not be sent or got no answer in time.
    `phase` (CLIENT_PHASES) does something to the socket first; what it saw is the result's "first".
    """
    if phase not in CLIENT_PHASES:
        raise ValueError("client phase {!r}: one of {}".format(phase, ", ".join(CLIENT_PHASES)))
    timeout = float(timeout)
    connect_timeout = float(connect_timeout if connect_timeout is not None else timeout)
    start = time.monotonic()
    result = {"event": Event.RESULT, "family": family, "addr": str(addr), "port": int(port), "socket": kind,
              "errno": None, "errno_name": None, "reply": None}
    try:
        sock = make_socket(family, addr, lab_node, kind)
    except Refused:
        raise
    except (OSError, ValueError) as exc:
        refused_type = isinstance(exc, OSError) and kind != "stream"  # the node's answer to the type
        result.update({"outcome": "X" if refused_type else "E", "phase": "socket", "elapsed_ms": now_ms(start),
                       "message": str(exc)})
        if isinstance(exc, OSError):
            result.update(os_error_fields(exc))
        return result
    try:
        try:
            address = sock_address(family, addr, port, service)
            if kind != "dgram":  # the connect timeouts are options of connection-oriented sockets only
                set_connect_timeout(sock, family, connect_timeout)
        except (OSError, ValueError) as exc:  # the harness could not prepare the socket: never X
            result.update({"outcome": "E", "phase": "setup", "elapsed_ms": now_ms(start), "message": str(exc)})
            if isinstance(exc, OSError):
                result.update(os_error_fields(exc))
            return result
        if phase != PHASE_CONNECT:
            try:
                first = first_step(sock, family, phase, addr, port, service, first_addr, first_port, connect_timeout)
            except OSError as exc:  # the kernel refused the local bind
                result.update({"outcome": "X", "phase": "bind", "elapsed_ms": now_ms(start)})
                result.update(os_error_fields(exc))
                return result
            result["first"] = first
            if first.get("outcome") == "E":
                result.update({"outcome": "E", "phase": "setup", "elapsed_ms": now_ms(start),
                               "message": first["message"]})
                return result
        try:
            sock.settimeout(connect_timeout + (1.0 if family != "tcp" else 0.0))
            sock.connect(address)
        except OSError as exc:
            result.update({"outcome": "X", "phase": "connect", "elapsed_ms": now_ms(start)})
            result.update(os_error_fields(exc))
            return result
        if family == "hybrid":  # the UDS is the backend's: CONNECT <port> reaches the guest (hybrid.py)
            from . import hybrid
            try:
                result["answer"] = hybrid.handshake(sock, port, connect_timeout) + "\n"
            except hybrid.HybridRefused as exc:
                result.update(hybrid.refused_fields(exc))
                result["elapsed_ms"] = now_ms(start)
                return result
        connected_ms = now_ms(start)
        result["connect_ms"] = connected_ms
        if kind != "stream":
            exchange = exchange_messages if kind == "seqpacket" else exchange_datagram
            result.update(exchange(sock, payload, max(0.1, timeout - (time.monotonic() - start))))
            result["elapsed_ms"] = now_ms(start)
            return result
        expected = REPLY_PREFIX + payload
        try:
            sock.settimeout(max(0.1, timeout - (time.monotonic() - start)))
            sock.sendall(payload.encode("utf-8"))
            chunks = []
            total = 0
            while total < len(expected.encode("utf-8")) + MAX_READ:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                chunks.append(chunk)
                total += len(chunk)
                if b"".join(chunks).decode("utf-8", "replace") == expected:
                    break
            reply = b"".join(chunks).decode("utf-8", "replace")
        except OSError as exc:
            result.update({"outcome": "E", "phase": "reply", "elapsed_ms": now_ms(start)})
            result.update(os_error_fields(exc))
            return result
        result.update({"phase": "reply", "elapsed_ms": now_ms(start), "reply": reply,
                       "outcome": "O" if reply == expected else "E"})
        if reply != expected:
            result["message"] = f"connected but the reply was {reply!r}, expected {expected!r}"
        return result
    finally:
        with contextlib.suppress(OSError):
            sock.close()


def exchange_messages(sock, payload, timeout):
    """seqpacket: SEQPACKET_MESSAGES messages out, as many echoes back, each one whole and alone.

    Both messages are sent before anything is read, so a transport that merged them (a stream)
    would hand the server one "payloadpayload" and the client one "Hello: payloadpayload".
    """
    expected = REPLY_PREFIX + payload
    messages = []
    try:
        sock.settimeout(timeout)
        for _ in range(SEQPACKET_MESSAGES):
            sock.send(payload.encode("utf-8"))
        for _ in range(SEQPACKET_MESSAGES):
            try:
                data = sock.recv(len(expected.encode("utf-8")) + MAX_READ)
            except socket.timeout:  # a merged echo leaves the second read waiting: judged below
                break
            if not data:
                break
            messages.append(data.decode("utf-8", "replace"))
    except OSError as exc:
        out = {"outcome": "E", "phase": "reply", "messages": messages}
        out.update(os_error_fields(exc))
        return out
    out = {"phase": "reply", "messages": messages, "reply": messages[0] if messages else ""}
    if messages == [expected] * SEQPACKET_MESSAGES:
        out["outcome"] = "O"
    else:
        out.update({"outcome": "E", "message": f"message boundaries not kept: sent {SEQPACKET_MESSAGES} x "
                    f"{payload!r}, received {messages!r}"})
    return out


def exchange_datagram(sock, payload, timeout):
    """dgram: one datagram out, its echo back; a send refused or no answer in time is X."""
    try:
        sock.send(payload.encode("utf-8"))
    except OSError as exc:
        out = {"outcome": "X", "phase": "send"}
        out.update(os_error_fields(exc))
        return out
    try:
        sock.settimeout(timeout)
        data = sock.recv(MAX_READ + len(payload.encode("utf-8")) + len(REPLY_PREFIX))
    except socket.timeout:
        return {"outcome": "X", "phase": "reply", "errno": timeout_errno(), "errno_name": errno_name(timeout_errno()),
                "message": f"no datagram came back within {timeout:g}s"}
    except OSError as exc:  # e.g. ECONNREFUSED: the ICMP answer to a datagram nobody listens for
        out = {"outcome": "X", "phase": "reply"}
        out.update(os_error_fields(exc))
        return out
    reply = data.decode("utf-8", "replace")
    out = {"phase": "reply", "reply": reply, "outcome": "O" if reply == REPLY_PREFIX + payload else "E"}
    if out["outcome"] == "E":
        out["message"] = f"the datagram that came back was {reply!r}, expected {REPLY_PREFIX + payload!r}"
    return out

"""The client side: connect, send, read the echo; the result event.

Stdlib only, Python >= 3.8.
"""
import socket
import time

from .common import MAX_READ, REPLY_PREFIX, Refused, errno_name, now_ms, timeout_errno
from .sockets import SEQPACKET_MESSAGES, make_socket, os_error_fields, set_connect_timeout, sock_address
from .protocol import Event


def connect_once(family, addr, port, service=None, payload="World!", timeout=10.0, connect_timeout=None,
                 lab_node=False, kind="stream"):
    """Connect, send, read the echo: the result event.

    X only when the node refused the connection: connect() failed, or -- for a non-stream type --
    socket() refused the type, or a datagram could not be sent or got no answer in time.
    """
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
            result["message"] = "connected but the reply was %r, expected %r" % (reply, expected)
        return result
    finally:
        try:
            sock.close()
        except OSError:
            pass


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
        out.update({"outcome": "E", "message": "message boundaries not kept: sent %d x %r, received %r"
                    % (SEQPACKET_MESSAGES, payload, messages)})
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
                "message": "no datagram came back within %gs" % timeout}
    except OSError as exc:  # e.g. ECONNREFUSED: the ICMP answer to a datagram nobody listens for
        out = {"outcome": "X", "phase": "reply"}
        out.update(os_error_fields(exc))
        return out
    reply = data.decode("utf-8", "replace")
    out = {"phase": "reply", "reply": reply, "outcome": "O" if reply == REPLY_PREFIX + payload else "E"}
    if out["outcome"] == "E":
        out["message"] = "the datagram that came back was %r, expected %r" % (reply, REPLY_PREFIX + payload)
    return out

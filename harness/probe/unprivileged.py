"""A socket created and bound by an unprivileged user, for this one socket only.

Stdlib only, Python >= 3.8, POSIX. Why a forked child: the kernel asks for privilege at bind()
time only -- net/vmw_vsock/af_vsock.c __vsock_bind_connectible(): a port <= LAST_RESERVED_PORT
(1023) needs capable(CAP_NET_BIND_SERVICE), else EACCES; a port chosen by the kernel
(vsock_auto_bind(), VMADDR_PORT_ANY) is always above it. Dropping privileges in the resident
probe itself would be for good (setuid cannot be undone) and would hit every other cell on the
node; so a child drops to `nobody` (setgroups, setgid, setuid: no capability is kept), creates
and binds the socket, and hands the bound descriptor back over a unix socket (SCM_RIGHTS). What
the parent then does with it (listen, accept) needs no privilege.
"""
import array
import json
import os
import socket

NOBODY = 65534  # the uid/gid of `nobody` when the passwd database has no such user


def nobody_ids():
    try:
        import pwd
        entry = pwd.getpwnam("nobody")
        return entry.pw_uid, entry.pw_gid
    except (ImportError, KeyError):
        return NOBODY, NOBODY


def _child(there, make, address):
    """In the forked child: drop to nobody, socket(), bind(), send the fd or the failure."""
    uid, gid = nobody_ids()
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)
    phase = "socket"
    try:
        sock = make()
        phase = "bind"
        sock.bind(address)
        fds = array.array("i", [sock.fileno()])
        there.sendmsg([b"{}"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds.tobytes())])
    except OSError as exc:
        there.send(json.dumps({"phase": phase, "errno": exc.errno, "message": str(exc)}).encode("utf-8"))


def bound_as_nobody(make, address, timeout=10.0):
    """(bound socket, None), or (None, {"phase", "errno", "message"}) when socket() or bind() failed.

    `make` builds the socket (in the child, as nobody); `address` is what bind() takes. Raises
    RuntimeError when the child could not be run at all (no fork, not root: nothing to drop): the
    harness failed, never the kernel (E, not B).
    """
    if not hasattr(os, "fork") or not hasattr(socket, "AF_UNIX"):
        raise RuntimeError("unprivileged binds need POSIX fork() and unix sockets")
    if os.geteuid() != 0:
        raise RuntimeError("unprivileged binds need the probe to run as root (it drops to nobody for the socket)")
    here, there = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    pid = os.fork()
    if pid == 0:  # the child: never returns, never runs the parent's cleanup or threads' code
        code = 0
        try:
            here.close()
            _child(there, make, address)
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    there.close()
    try:
        here.settimeout(timeout)
        msg, ancillary, _, _ = here.recvmsg(4096, socket.CMSG_SPACE(array.array("i").itemsize))
    finally:
        here.close()
        os.waitpid(pid, 0)
    fds = array.array("i")
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[: len(data) - len(data) % fds.itemsize])
    if len(fds):
        return socket.socket(fileno=fds[0]), None
    try:
        failure = json.loads(msg.decode("utf-8")) if msg else None
    except ValueError:
        failure = None
    if not isinstance(failure, dict) or "errno" not in failure:
        raise RuntimeError("the unprivileged child gave no socket and no reason (exited early)")
    return None, failure

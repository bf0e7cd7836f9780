"""Win32-OpenSSH in front of a FakeHyperVLab machine: what an SSH transport to a Windows node meets.

Each behaviour mirrors the upstream code it stands for (PowerShell/openssh-portable):

- exec: contrib/win32/win32compat/w32-doexec.c do_exec_windows: with the default shell (cmd.exe) the
  command runs as `"<shell>" /c "<command>"` (posix_spawn of the quoted line, no escaping), and cmd.exe
  removes the outer quotes again; the program then splits its command line by CommandLineToArgvW's
  rules (tests/fakes/fake_psexec.py split_windows_cmdline). A program cmd.exe cannot find answers as
  cmd.exe does: "'x' is not recognized as an internal or external command", exit 9009 -- which is
  what `sh`, `mktemp`, `sha256sum`, `rm` or `kill` would meet on a Windows node.
- sftp: sftp-server.c with contrib/win32/win32compat/misc.c realpath: paths are `/C:/...`
  (realpath(".") is the login's profile folder, `/C:/Users/<user>`); mkdir of an existing folder fails.
- the programs themselves are FakeHyperVLab's: the probe (its `session` answered here with the lab's
  Hyper-V socket semantics, `info` and `services` as the lab's one-shot probe answers them) and
  powershell.exe -EncodedCommand scripts.

Everything sent is recorded in `transcript` as ("exec", address, command line) and ("sftp", address,
op, path). The Hyper-V reachability behind it is the documents' matrix A as FakeHyperVLab restates it:
not proof of anything about Windows.
"""
from __future__ import annotations

import json
import queue
import threading
import types

import paramiko

from harness.probe import registry
from harness.probe.protocol import Event, Op
from harness.transports.ssh import SSHTransport
from tests.fakes.fake_psexec import split_windows_cmdline
from tests.fakes.fake_windows import WSAEADDRINUSE, FakeHyperVLab, FakeListener, FakeWindowsMachine, with_winreg

HOME = "/C:/Users/tester"


class _Stream:
    """One direction of a channel: bytes in order, then EOF."""

    def __init__(self):
        self._chunks: queue.Queue[bytes | None] = queue.Queue()
        self._buf = b""
        self._eof = False
        self._lock = threading.Lock()

    def write(self, data: bytes) -> None:
        self._chunks.put(data)

    def close(self) -> None:
        self._chunks.put(None)

    def _fill(self, block: bool, timeout: float | None = None) -> bool:
        try:
            chunk = self._chunks.get(block, timeout)
        except queue.Empty:
            return False
        if chunk is None:
            self._eof = True
        else:
            self._buf += chunk
        return True

    def ready(self) -> bool:
        with self._lock:
            while not self._eof and self._fill(False):
                pass
            return bool(self._buf)

    def read(self, n: int) -> bytes:
        with self._lock:
            out, self._buf = self._buf[:n], self._buf[n:]
            return out

    def eof(self) -> bool:
        with self._lock:
            return self._eof and not self._buf

    def readline(self) -> bytes:
        while True:
            with self._lock:
                if b"\n" in self._buf:
                    line, _, self._buf = self._buf.partition(b"\n")
                    return line + b"\n"
                if self._eof:
                    out, self._buf = self._buf, b""
                    return out
            self._fill(True, 0.05)


class FakeChannel:
    def __init__(self, ssh: FakeWin32OpenSSH, machine: FakeWindowsMachine):
        self.ssh, self.machine = ssh, machine
        self.out, self.err, self.stdin = _Stream(), _Stream(), _Stream()
        self.closed = False
        self.eof_received = False
        self._status: int | None = None

    # -- what SSHTransport calls --------------------------------------------------------------
    def settimeout(self, timeout) -> None:
        pass

    def exec_command(self, command: str) -> None:
        self.ssh.transcript.append(("exec", self.machine.address, command))
        argv = split_windows_cmdline(command)  # cmd.exe /c "<command>": outer quotes removed, then the program
        threading.Thread(target=self._run, args=(argv,), daemon=True).start()

    def makefile(self, mode="rb"):
        return self.out

    def makefile_stderr(self, mode="rb"):
        return self.err

    def sendall(self, data: bytes) -> None:
        if self.closed:
            raise OSError("channel closed")
        self.stdin.write(data)

    def shutdown_write(self) -> None:
        self.stdin.close()

    def recv_ready(self) -> bool:
        return self.out.ready()

    def recv(self, n: int) -> bytes:
        return self.out.read(n)

    def recv_stderr_ready(self) -> bool:
        return self.err.ready()

    def recv_stderr(self, n: int) -> bytes:
        return self.err.read(n)

    def exit_status_ready(self) -> bool:
        return self._status is not None

    def recv_exit_status(self) -> int:
        return self._status if self._status is not None else -1

    def close(self) -> None:
        self.closed = True
        self.stdin.close()  # sshd closes the child's stdin: EOF

    # -- the program --------------------------------------------------------------------------
    def _finish(self, out: bytes, err: bytes, rc: int) -> None:
        if out:
            self.out.write(out)
        if err:
            self.err.write(err)
        self.out.close()
        self.err.close()
        self.eof_received = True
        self._status = rc

    def _run(self, argv: list[str]) -> None:
        lab, machine = self.ssh.lab, self.machine
        exe = argv[0].lower() if argv else ""
        if exe in ("py", "py.exe", "python", "python.exe") or exe.endswith("python.exe"):
            args = argv[1:]
            if args and args[0] == "-3":
                args = args[1:]
            if len(args) >= 2 and args[1] == "session" and self.ssh.exists(machine, args[0]):
                if machine.python_version < (3, 12):
                    msg = {"event": "error", "message": f"Python {machine.python} has no socket.AF_HYPERV: the probe needs "
                           "Python >= 3.12 on Windows nodes"}
                    return self._finish((json.dumps(msg) + "\r\n").encode(), b"", 2)
                return self._session(args)
            if args and not self.ssh.exists(machine, args[0]):
                return self._finish(b"", f"python: can't open file '{args[0]}'\r\n".encode(), 2)
            out, err, rc = lab._python(machine, args)
            return self._finish(out, err, rc)
        if exe == "powershell.exe":
            from harness.hyperv.powershell import decode_command

            script = decode_command(argv[argv.index("-EncodedCommand") + 1])
            lab.scripts.append((machine.address, script))
            out, err, rc = lab._powershell(machine, script, False)
            return self._finish(out, err, rc)
        name = argv[0] if argv else ""
        self._finish(b"", f"'{name}' is not recognized as an internal or external command,\r\n"
                          f"operable program or batch file.\r\n".encode(), 9009)

    def _session(self, args: list[str]) -> None:
        """The probe's session, answering with FakeHyperVLab's Hyper-V semantics (matrix A as it restates it)."""
        lab, machine = self.ssh.lab, self.machine
        lock = threading.Lock()
        mine: dict[str, FakeListener] = {}

        def say(obj: dict) -> None:
            with lock:
                self.out.write((json.dumps(obj, sort_keys=True) + "\r\n").encode())

        say({"id": None, "event": Event.READY, "pid": 4242, "python": machine.python, "lab_node": False})
        while True:
            raw = self.stdin.readline()
            if not raw:
                break
            try:
                req = json.loads(raw)
            except ValueError:
                raise AssertionError(f"fake session got {raw!r}") from None
            rid, op = req.get("id"), req.get("op")
            if op == Op.BYE:
                say({"id": rid, "event": Event.BYE})
                break
            if op == Op.INFO:
                out, _, _ = lab._python(machine, [args[0], "info"])
                say(dict(json.loads(out), id=rid))
            elif op == Op.SERVICES:
                answer = with_winreg(machine, lambda req=req: registry.services_answer(
                    req["action"], req.get("items") or [], req.get("owner")))
                say(dict(answer, id=rid))
            elif op == Op.LISTEN:
                parsed = types.SimpleNamespace(addr=req["addr"], port=req["port"], service=req.get("service"))
                bind, service = str(req["addr"]).lower(), lab._service(parsed)
                if any(x.machine is machine and x.service == service and x.bind == bind for x in lab.listeners):
                    say({"id": rid, "event": Event.BIND_FAILED, "phase": "bind", "errno": WSAEADDRINUSE,
                         "errno_name": "WSAEADDRINUSE", "message": "address in use"})
                    continue
                name = f"L{len(mine) + 1}"
                listener = FakeListener(machine, bind, service, int(req["port"]), int(req.get("count") or 0),
                                        None, (0, 0), on_accept=lambda peer, payload, n=name: say(
                                            {"id": None, "event": Event.ACCEPTED, "listener": n, "peer": peer,
                                             "received": payload}))
                mine[name] = listener
                lab.listeners.append(listener)
                say({"id": rid, "event": Event.LISTENING, "family": req["family"], "addr": req["addr"],
                     "port": req["port"], "service": service, "listener": name})
            elif op == Op.CONNECT:
                parsed = types.SimpleNamespace(family=req["family"], addr=req["addr"], port=req["port"],
                                               service=req.get("service"), payload=req.get("payload", "World!"))
                say(dict(lab._connect(machine, parsed), id=rid))
            elif op == Op.STOP:
                listener = mine.pop(req["listener"], None)
                if listener in lab.listeners:
                    lab.listeners.remove(listener)
                say({"id": rid, "event": Event.STOPPED, "accepted": listener.accepted if listener else 0,
                     "peers": [], "errors": []})
            else:
                say({"id": rid, "event": Event.ERROR, "message": f"unknown op {op!r}"})
        for listener in mine.values():  # EOF: the session closes its listeners and exits
            if listener in lab.listeners:
                lab.listeners.remove(listener)
        self._finish(b"", b"", 0)


class FakeSFTP:
    """sftp-server on Windows: `/C:/...` paths, exclusive mkdir, files as bytes."""

    def __init__(self, ssh: FakeWin32OpenSSH, machine: FakeWindowsMachine):
        self.ssh, self.machine = ssh, machine

    def _log(self, op: str, path: str) -> None:
        self.ssh.transcript.append(("sftp", self.machine.address, op, path))

    def _fs(self) -> dict:
        return self.ssh.files.setdefault(self.machine.address, {"dirs": {HOME, "/C:/Users", "/C:"}, "files": {}})

    def get_channel(self):
        return types.SimpleNamespace(settimeout=lambda t: None)

    def normalize(self, path: str) -> str:
        self._log("realpath", path)
        return HOME if path in (".", "") else path

    def stat(self, path: str):
        self._log("stat", path)
        fs = self._fs()
        if path.lower() in {d.lower() for d in fs["dirs"]} or path in fs["files"]:
            return types.SimpleNamespace(st_mode=0o40700)
        raise FileNotFoundError(2, "No such file")

    def mkdir(self, path: str, mode: int = 0o777) -> None:
        self._log("mkdir", path)
        fs = self._fs()
        if path.lower() in {d.lower() for d in fs["dirs"]}:
            raise OSError("Failure")  # sftp-server process_mkdir: mkdir() failed
        fs["dirs"].add(path)

    def open(self, path: str, mode: str = "rb"):
        self._log("open-" + mode, path)
        fs = self._fs()
        if "w" in mode:
            buf = bytearray()

            class W:
                def write(self, data):
                    buf.extend(data)

                def __enter__(self):
                    return self

                def __exit__(self, *exc):
                    fs["files"][path] = bytes(buf)
            return W()
        if path not in fs["files"]:
            raise FileNotFoundError(2, "No such file")
        data = fs["files"][path]

        class R:
            def read(self, n=-1):
                return data

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                pass
        return R()

    def remove(self, path: str) -> None:
        self._log("remove", path)
        if self._fs()["files"].pop(path, None) is None:
            raise FileNotFoundError(2, "No such file")

    def rmdir(self, path: str) -> None:
        self._log("rmdir", path)
        fs = self._fs()
        if any(f.startswith(path + "/") for f in fs["files"]):
            raise OSError("Failure")  # not empty
        fs["dirs"].discard(path)

    def close(self) -> None:
        pass


class _FakeTransport:
    def __init__(self, ssh, machine):
        self.ssh, self.machine = ssh, machine

    def is_active(self) -> bool:
        return True

    def set_keepalive(self, interval) -> None:
        pass

    def open_session(self, timeout=None) -> FakeChannel:
        return FakeChannel(self.ssh, self.machine)


class _FakeClient:
    def __init__(self, ssh, machine):
        self._transport = _FakeTransport(ssh, machine)
        self.ssh, self.machine = ssh, machine

    def get_transport(self):
        return self._transport

    def open_sftp(self) -> FakeSFTP:
        return FakeSFTP(self.ssh, self.machine)

    def close(self) -> None:
        pass


class FakeWin32OpenSSH:
    """install(monkeypatch): SSH transports to the lab's machines reach these fakes instead of a network."""

    def __init__(self, lab: FakeHyperVLab):
        self.lab = lab
        self.transcript: list[tuple] = []
        self.files: dict[str, dict] = {}

    def exists(self, machine: FakeWindowsMachine, windows_path: str) -> bool:
        """A path as cmd.exe's program gets it (C:\\...) against what SFTP wrote (/C:/...)."""
        sftp_path = "/" + windows_path.replace("\\", "/")
        return sftp_path in self.files.get(machine.address, {}).get("files", {})

    def install(self, monkeypatch) -> FakeWin32OpenSSH:
        ssh = self
        self.lab.file_views.append(self.exists)

        def connect(transport: SSHTransport) -> paramiko.SSHClient:
            transport.connects += 1
            return _FakeClient(ssh, ssh.lab.machine(transport.node.access.host))  # type: ignore[return-value]
        monkeypatch.setattr(SSHTransport, "_connect", connect)
        return self

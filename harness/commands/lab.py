"""`hvsock-matrix lab up [--guests N] [--kernel SPEC] [--guest-kernel SPEC] [--netns] | status | down`: the lab-in-a-box."""
from __future__ import annotations

import argparse
import json

from harness.addresses import check_port


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="lab_action", required=True)
    up = sub.add_parser("up", help="build what is missing, boot l1 and its guests, write the inventory")
    up.add_argument("--guests", type=int, default=None,
                    help="L2 guests inside l1 (0..2, default 2; with --netns 0..3, default 3)")
    up.add_argument("--port", type=_tcp_port, default=None, help="loopback port for l1's sshd (default 2222)")
    up.add_argument("--kernel", metavar="SPEC", default=None,
                    help="l1's kernel: stable (default), backports, sid, or a Debian version of linux-image-amd64")
    up.add_argument("--guest-kernel", metavar="SPEC", default=None,
                    help="the guests' kernel (same SPECs; default: l1's)")
    up.add_argument("--netns", action="store_true",
                    help="vsock network namespaces in l1 (global0/1, local0/1, as the kernel's vmtest.sh) with "
                         "vm21, vm22, vm23 started in global0, local0, local1; needs a kernel >= 7.0 (--kernel sid)")
    up.add_argument("--hybrid", type=int, default=0, metavar="N",
                    help="also N hybrid vsock guests vm31.. (vhost-user-vsock-device + vhost-device-vsock in l1; 0..2)")
    up.add_argument("--hybrid-backend", choices=("shared", "per-guest"), default="shared",
                    help="one vhost-device-vsock for every hybrid guest (default; sibling routing) or one each")
    st = sub.add_parser("status", help="is the lab running, its port, boot times, inventory")
    st.add_argument("--json", action="store_true", help="print the status as one JSON object")
    down = sub.add_parser("down", help="stop the lab's qemu (by its pid file) and remove its run folder")
    down.add_argument("--purge", action="store_true", help="also remove the kernel, keys and initramfs")


def _tcp_port(text: str) -> int:
    """1..65535: port 0 must not quietly mean "the default lab" (it is someone else's)."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text[:40]!r}") from None
    problem = check_port(port, "tcp")
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return port


def run(args: argparse.Namespace) -> int:
    from harness.lab import lifecycle
    from harness.lab import netns as lab_netns

    if args.lab_action == "up":
        guests = args.guests if args.guests is not None else (lab_netns.MAX_GUESTS if args.netns else 2)
        state = lifecycle.up(guests=guests, port=args.port, kernel=args.kernel, guest_kernel=args.guest_kernel,
                             netns=args.netns, hybrid=args.hybrid, hybrid_mode=args.hybrid_backend)
        times = ", ".join(f"{k} {v:.0f}s" for k, v in state["boot_s"].items())
        print(f"lab up: inventory {state['inventory']} ({lifecycle.kernels_text(state)}; ready after: {times})")
        return 0
    if args.lab_action == "status":
        st = lifecycle.status()
        if args.json:
            print(json.dumps(st))
        elif not st["running"]:
            print(f"lab down (cache {st['cache']})")
        else:
            times = ", ".join(f"{k} {v:.0f}s" for k, v in (st["boot_s"] or {}).items())
            print(f"lab {'up' if st['ready'] else 'booting'}: qemu pid {st['pid']}, {st['guests']} guests, "
                  f"l1 ssh 127.0.0.1:{st['port']} {'answers' if st['ssh'] else 'silent'}; "
                  f"ready after {times or '-'}; inventory {st['inventory']}")
            places = st.get("netns") or {}
            for node, k in st["kernels"].items():
                print(f"  {node}: kernel {k.get('release') or '?'} ({k.get('spec') or '?'} {k.get('version') or ''})".rstrip()
                      + _place(places.get(node)))
            for node, place in places.items():
                if node not in st["kernels"]:
                    print(f"  {node}: l1{_place(place)}")
            for node, kind in (st.get("vsock") or {}).items():
                print(f"  {node}: vsock {kind}")
        return 0 if st["running"] else 1
    lifecycle.down(purge=args.purge)
    return 0


def _place(place: dict | None) -> str:
    """', netns local0 (local)' for a node `lab up --netns` placed; ', init netns (global)' for l1."""
    if not place:
        return ""
    where = f"netns {place['netns']}" if place.get("netns") else "init netns"
    return f", {where} ({place.get('mode')})"

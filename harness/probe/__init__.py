"""hvsock-matrix probe: the program run on every node (stdlib only, Python >= 3.8).

It plays both sides of the documents' program -- a server that answers "Hello: " + payload and
a client that sends a payload and checks the echo -- over AF_HYPERV, AF_VSOCK or TCP, and says
what happened as JSON lines so the controller never has to parse prose.

    probe.pyz serve   --family F --addr A --port P [--service GUID] [--socket TYPE] [--count N] [--timeout T]
                      [--lab-node]
    probe.pyz connect --family F --addr A --port P [--service GUID] [--socket TYPE] --payload S [--timeout T]
                      [--connect-timeout C] [--lab-node]
    probe.pyz info    [--lab-node]
    probe.pyz session [--idle-timeout T] [--lab-node]

TYPE is stream (default), seqpacket or dgram. A type the node refuses is answered with its errno
and the phase (socket, bind, listen, connect, send, reply) where it was refused.

`session` keeps one process per node alive for a whole run and serves JSON-line requests
concurrently: on nested lab guests a process start costs 10-50 s, a request a round-trip.

The package is shipped to nodes as ONE zipapp file (bundle.py builds it, byte for byte the same
per source, so its sha256 is stable); its modules import each other relatively, so the same
files run as `harness.probe` on the controller and as the zipapp's package on a node:

    protocol.py  requests and answers (TypedDicts), defined once for the probe and the controller
    common.py    platform, errno names, the lab-node permission
    sockets.py   sockets per family, addresses, connect timeouts
    listener.py  the server side        client.py  the client side
    facts.py     `info`                 session.py the resident session
    cli.py       the command line       bundle.py  (controller only) the zipapp builder

Safety: AF_VSOCK sockets and the /dev/vsock ioctl are refused (event "refused", exit 3) unless
this is a lab node: --lab-node, HVSOCK_MATRIX_LAB_NODE=1, or /run/hvsock-matrix-lab-guest exists.

Nothing is imported here: on nested lab guests every module is read over 9p, and the resident
session should start with as few as possible.
"""

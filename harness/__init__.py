"""hvsock-matrix: a test-matrix harness for Hyper-V sockets (AF_HYPERV) and Linux vsock (AF_VSOCK)."""

__version__ = "0.1.0"

"""Fakes for what cannot exist on these machines: Windows, Hyper-V and pypsexec's SMB server."""

"""`hvsock-matrix doctor`: per node, what a cell needs, whether it is there, and the fix.

facts.py gathers facts from the nodes (probe `info` through the agents, PowerShell on Windows);
checks.py turns facts into rows with pure functions (tested against sample facts); parse.py reads
tool output (netsh, socat, /proc/modules); table.py renders the rows with rich.
"""

"""`python -m harness.probe ...` on the controller: the same entry point as the zipapp's."""
import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())

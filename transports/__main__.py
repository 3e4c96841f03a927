"""``python -m transports``: the same as the ``pubsub-rpc`` command."""

import sys

from ._cli import main

if __name__ == "__main__":
    sys.exit(main())

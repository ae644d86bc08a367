import signal
import sys

from .cli import main

if hasattr(signal, "SIGPIPE"):  # `python -m normconf list | head` ends quietly
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
sys.exit(main())

import signal
import sys

from core.cli import main


def _terminated(signum, frame):
    # A stop request (timeout, docker stop, systemd) unwinds like Ctrl-C, so a batch writes no
    # more chunks and removes its unfinished output file.
    raise SystemExit(128 + signum)


signal.signal(signal.SIGTERM, _terminated)
sys.exit(main())

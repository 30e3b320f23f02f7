"""``python -m jaxkin.train ...`` is ``jaxkin train ...`` (the command line: :mod:`jaxkin.cli.train`; the library:
:mod:`jaxkin.network`)."""

import sys

if __name__ == "__main__":
    from jaxkin.cli import main

    sys.exit(main(["train", *sys.argv[1:]]))

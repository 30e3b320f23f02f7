import sys

from jaxkin.cli import main

sys.exit(main())

import sys

from scalenas.cli import main

sys.exit(main())

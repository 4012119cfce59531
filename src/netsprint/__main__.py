import sys

from netsprint.cli import main

sys.exit(main())

"""`python -m netsprint.agent --config FILE --listen HOST:PORT` (the same as `netsprint agent`)."""

import sys

from netsprint.agent.runner import main

sys.exit(main())

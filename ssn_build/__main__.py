import sys

from ssn_build.cli import main

sys.exit(main())

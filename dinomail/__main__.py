import sys

from dinomail.cli import main

sys.exit(main())

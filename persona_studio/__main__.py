import sys

from persona_studio.cli import main

sys.exit(main())

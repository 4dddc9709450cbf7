import sys

from data_prep.foundation_motion.run import main

sys.exit(main())

"""Training entry point (logic in `mora.training`).

python train/train.py --config train/configs/tiny.yaml [--resume [auto|CKPT]] [key.sub=value ...]
deepspeed --num_gpus 8 train/train.py --config train/configs/<recipe>.yaml [key.sub=value ...]
"""

import sys
from pathlib import Path

# launchers run this file by path; make the repository importable without an installed package
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mora.training.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())

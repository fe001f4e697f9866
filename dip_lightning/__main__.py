import os

from dip_lightning.multirun import PARENT_ENV
from dip_lightning.signals import stop_with_parent

if PARENT_ENV in os.environ:  # launched by a script (``multirun.launch``): stop when it dies
    stop_with_parent(int(os.environ.pop(PARENT_ENV)))  # (popped: the launcher's workers watch their own parent)

from dip_lightning.cli import main  # noqa: E402

main()

"""imgsearch: choose an image-text embedding model from real search performance on your photos."""

import os

# torch's OpenMP threads spin at every barrier by default. On cores shared with decode threads
# or other processes, a spinning thread burns the time slice its preempted partner needs: beside
# one busy process on 2 cores, a ViT-B-32 batch-1 forward on 2 threads took 1.6 s spinning and
# 0.15 s passive. libgomp reads this once, when it loads, so it is set before anything imports
# torch; a value the user set is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"

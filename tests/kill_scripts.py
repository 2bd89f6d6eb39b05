"""Scripts that start a build in a child process and kill -9 it part-way (run with ``python -c``).

Shared by the build, source-fingerprint and object-store tests; argv[1] is the source, argv[2]
a cache folder or URL.
"""

KILLER = """
import os, signal, sys
from pathlib import Path
from nsynth_prep.builder import blocks
from nsynth_prep.builder import pipeline as build
original, done = blocks.write_block, []
def write_then_die(job, block):
    if len(done) == 1:
        os.kill(os.getpid(), signal.SIGKILL)  # kill -9 in the middle of the build
    done.append(original(job, block))
    return done[-1]
blocks.write_block = write_then_die
build.build_cache(Path(sys.argv[1]), sys.argv[2], build.BuildConfig(features=("trimmed",), workers=1),
                  progress=False)  # argv[2]: a folder or a URL
"""


SPOOL_KILLER = """
import os, signal, sys
from pathlib import Path
from nsynth_prep.builder import pipeline as build
from nsynth_prep.readers import targz as spool
spool.SPOOL_BLOCK = 16  # 60 notes: 4 blocks
original, written = spool._write_block, []
def write_then_die(*args, **kwargs):
    original(*args, **kwargs)
    written.append(1)
    if len(written) == 2:
        os.kill(os.getpid(), signal.SIGKILL)  # kill -9 while streaming the archive
spool._write_block = write_then_die
build.build_cache(Path(sys.argv[1]), sys.argv[2], build.BuildConfig(), progress=False)  # argv[2]: a folder or a URL
"""

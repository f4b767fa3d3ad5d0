"""edgepose on Ray: ``edgepose infer SOURCE... --ray [ADDRESS]`` and ``edgepose eval ... --ray``,
and the Python entry points :func:`infer` and :func:`evaluate` (see :mod:`edgepose.ray.api`).

``ray`` is optional (``pip install 'edgepose[ray]'``): imported when a job starts, never by the
rest of edgepose. The package: :mod:`.session` (connecting to Ray), :mod:`.plan` (sources ->
work items, frame ranges), :mod:`.worker` (the actors), :mod:`.records` (the work folder),
:mod:`.merge` (records -> outputs through :mod:`edgepose.runner`), :mod:`.api`.
"""
from .api import DEFAULT_CHUNK_FRAMES, DEFAULT_WORKERS, IMAGES_PER_ITEM, evaluate, infer, log_summary
from .plan import FrameRange
from .records import work_root
from .session import check_address

__all__ = ["infer", "evaluate", "FrameRange", "check_address", "log_summary", "work_root",
           "DEFAULT_WORKERS", "DEFAULT_CHUNK_FRAMES", "IMAGES_PER_ITEM"]

"""``edgepose infer`` and ``edgepose eval`` on Ray: many images, long videos and whole COCO sets
over worker actors, the same files with the same bytes as the commands without ``--ray``.

- Workers (:mod:`.worker`): one Ray actor per worker; each loads the estimator once (``threads``
  inference threads, one Ray CPU per thread). A worker whose process dies is restarted by Ray
  and its unfinished items run again there (``max_restarts`` / ``max_task_retries``).
- Work items (:mod:`.plan`): ``images_per_item`` images, or the frames ``[start, end)`` of a
  video (``chunk_frames`` of them).
- Records (:mod:`.records`): each finished item's results, written atomically and once to
  ``OUT/.edgepose-ray/<job>/items/<item>.json``; ``<job>`` hashes the model's bytes, the sources
  and every option that changes results. A rerun of an interrupted job skips the items recorded;
  the work folder goes once the outputs are written.
- Outputs (:mod:`.merge`): merged from the records in source order, then image order / frame
  number; a video is replayed through ``edgepose.runner.infer_video`` (tracking, if asked, runs
  there in frame order: the IDs of ``edgepose infer --track``), each frame checked against its
  worker's checksum.
- Ray (:mod:`.session`): without an address (``"local"``) a Ray instance on this machine,
  started for the job and shut down after it; ``"auto"`` or ``HOST:PORT`` joins a running
  cluster (left running). On a cluster, every node needs this edgepose installed and the model
  and the sources at the same paths (shared storage); the driver (this process) writes every
  output.
"""
import contextlib
import os
import time
from typing import Any, Callable, List, Optional, Sequence, Tuple

from .. import __version__
from ..errors import EdgeposeError, InputError, ModelError
from ..log import logger
from ..runner import EstimatorOptions
from .merge import Entries, merge_video
from .plan import boxes_of, file_id, job_hash, plan_infer, seek_redo, tracker_spec
from .records import JobDir, work_root
from .session import RaySession, check_address, import_ray
from .worker import QUEUE_DEPTH, WorkerPool, model_digest

DEFAULT_WORKERS = 2
DEFAULT_CHUNK_FRAMES = 200
# Images per work item. Measured (benchmarks/ray_throughput.py, 2 CPUs, Lightweight OpenPose
# 368x496 at ~175 ms an image): an item costs 7.5 ms beyond its model time when it is alone in
# flight (the actor call, the result's transfer, the record's durable write) and 2.7-3.1 ms with
# two in flight per worker (QUEUE_DEPTH); 1 image per item loses ~1.6 %, 4 lose ~0.4 % and write
# a quarter of the records, while a lost item still costs little and the last ones spread.
IMAGES_PER_ITEM = 4


def _model_options(model, threads: Optional[int], options: Optional[dict]) -> tuple:
    """``(model path, threads, the other estimator options)`` of a job: ``model`` is a path (with
    ``threads`` and the ``estimator_options`` dict) or an :class:`edgepose.runner.EstimatorOptions`
    holding them all (its threads unless ``threads`` is given; no ``estimator_options`` then)."""
    if not isinstance(model, EstimatorOptions):
        return model, threads, options
    if options:
        raise InputError("estimator_options go with a model path; an EstimatorOptions holds its own")
    d = model.to_dict()
    path, own = d.pop("model"), d.pop("threads")
    return path, own if threads is None else threads, d


def _estimator_spec(model: str, threads: int, options: Optional[dict]) -> dict:
    """The workers' :class:`edgepose.runner.EstimatorOptions`, as the plain dict they receive
    (paths absolute); an unknown option is a one-line error."""
    options = dict(options or {})
    for k in ("model", "threads"):
        if k in options:
            raise InputError("unknown estimator option(s): %s" % k)
    spec = EstimatorOptions.from_dict(dict(options, model=model, threads=int(threads)))
    return spec.absolute().to_dict()


def _check_model(spec: dict) -> Tuple[str, Any]:
    """One-line errors now, before Ray starts, for a model or an option the workers could not
    load; returns the model's digest and the estimator's metadata (None for TensorRT, which may
    load on the workers only)."""
    from ..backends import backend_kind

    if not os.path.exists(spec["model"]):
        raise ModelError("model file not found: %s" % spec["model"])
    meta = None
    if backend_kind(spec["model"]) != "tensorrt":
        meta = EstimatorOptions.from_dict(spec).load(threads=1).meta
    return model_digest(spec["model"]), meta


def _estimator_identity(spec: dict, digest: str) -> dict:
    ident = {k: v for k, v in spec.items() if k not in ("threads", "model")}
    ident["model"] = digest
    for k in ("detector", "detector_spec"):
        if isinstance(spec[k], str) and os.path.isfile(spec[k]):
            ident[k] = model_digest(spec[k])
    return ident


def _progress_bar(total: int, done: int, enabled: Optional[bool]):
    from ..log import progress_bar

    return progress_bar(total=total, initial=done, unit="item", desc="ray", enabled=enabled)


class _Job:
    """Within: Ray connected; :meth:`run` runs items on the workers (started on first use) and
    records each one's results (``make_record(item, out)``); :meth:`stats` says how it went."""

    def __init__(self, items: List[dict], jobdir: JobDir, spec: dict, digest: str,
                 address: str, workers: int, threads: int, progress, on_item, queue_depth: int,
                 make_record: Callable[[dict, dict], dict]):
        self.items, self.jobdir, self.spec, self.digest = items, jobdir, spec, digest
        self.workers, self.threads, self.progress, self.on_item = workers, threads, progress, on_item
        self.queue_depth, self.make_record = queue_depth, make_record
        self.session = RaySession(address, num_cpus=max(os.cpu_count() or 1, workers * threads))
        self.pool: "Optional[WorkerPool]" = None
        self.bar = None
        self.t0 = time.perf_counter()
        self.t_run = 0.0
        self.total = len(items)
        self.done = sum(1 for it in items if it.get("_done"))
        self.done_before = self.done

    def __enter__(self):
        self.session.__enter__()
        try:
            need = self.workers * self.threads
            have = self.session.cpus()
            if have < need:
                raise InputError("the Ray cluster has %g CPUs: %d workers x %d threads need %d"
                                 % (have, self.workers, self.threads, need))
        except BaseException:
            self.session.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc):
        try:
            if self.bar is not None:
                self.bar.close()
            if self.pool is not None:
                self.pool.close()
        finally:
            self.session.__exit__(*exc)
        return False

    def run(self, todo: List[dict], again: bool = False) -> None:
        if not todo:
            return
        t0 = time.perf_counter()
        if again:
            self.total += len(todo)
        if self.pool is None:
            self.pool = WorkerPool(self.session.ray, self.workers, self.threads, self.spec,
                                   self.jobdir, self.digest, self.queue_depth)
            self.bar = _progress_bar(self.total, self.done, self.progress)
        elif self.bar is not None and again:
            self.bar.total = self.total
            self.bar.refresh()
        pool = self.pool

        def handle(item, out, worker):
            rec = self.make_record(item, out)
            rec.update(worker=worker.index, pid=out.get("pid"), busy_s=out.get("busy_s"),
                       frames=out.get("frames", 0))
            self.jobdir.save(item["id"], rec)
            self.done += 1
            if self.bar is not None:
                self.bar.update(1)
            if self.on_item is not None:
                self.on_item({"item": item["id"], "done": self.done, "total": self.total,
                              "worker": worker.index, "pid": out.get("pid"),
                              "workers": pool.describe()})

        pool.run(todo, handle)
        self.t_run += time.perf_counter() - t0

    def stats(self, images: int, frames: int, merge_s: float) -> dict:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        pool = self.pool
        ws = pool.workers if pool is not None else []
        startup = pool.startup_s if pool is not None else 0.0
        proc = max(self.t_run - startup, 1e-9)
        ran = sum(w.items for w in ws)
        busy = sum(w.busy_s for w in ws)
        workers = []
        for w in ws:
            d = w.describe()
            d.update(items=w.items, frames=w.frames, busy_s=round(w.busy_s, 3),
                     frames_per_s=round(w.frames / proc, 3), items_per_s=round(w.items / proc, 3))
            workers.append(d)
        n = max(1, len(ws))
        return {"items": self.total, "items_done_before": self.done_before, "items_run": ran,
                "items_rerun": pool.rerun if pool is not None else 0,
                "images": images, "frames": frames,
                "wall_s": round(time.perf_counter() - self.t0, 3), "startup_s": round(startup, 3),
                "processing_s": round(proc if ran else 0.0, 3), "merge_s": round(merge_s, 3),
                "busy_s": round(busy, 3),
                "throughput_per_s": round((ran and sum(w.frames for w in ws) / proc) or 0.0, 3),
                "utilization": round(busy / (n * proc), 4) if ran else 0.0,
                "overhead_ms_per_item": round(1000 * (n * proc - busy) / ran, 2) if ran else 0.0,
                "workers": workers}


def log_summary(st: dict) -> None:
    what = " + ".join(w for w in ("%d images" % st["images"] if st["images"] else "",
                                  "%d frames" % st["frames"] if st["frames"] else "") if w)
    logger.info("ray: %d items (%d done before, %d run, %d run again), %s, in %.1f s on %d workers: "
                "%.2f images/frames per s (start-up %.1f s, merge %.1f s)"
                % (st["items"], st["items_done_before"], st["items_run"], st["items_rerun"],
                   what or "nothing", st["wall_s"], len(st["workers"]), st["throughput_per_s"],
                   st["startup_s"], st["merge_s"]))
    for w in st["workers"]:
        logger.info("ray: worker %d (pid %s on %s): %d items, %d images/frames, %.2f per s, busy %.1f s%s"
                    % (w["worker"], w["pid"], w["host"], w["items"], w["frames"], w["frames_per_s"],
                       w["busy_s"], "; restarted %d time%s" % (w["restarts"], "s" if w["restarts"] > 1 else "")
                       if w["restarts"] else ""))
    if st["items_run"]:
        logger.info("ray: the workers were busy %.0f%% of the time; %.1f ms per item went elsewhere "
                    "(dispatch, transfer, records, the last items' wait)"
                    % (100 * st["utilization"], st["overhead_ms_per_item"]))


def infer(model: "str | EstimatorOptions", sources: Sequence[str], out: Optional[str] = None, json_path: Optional[str] = None,
          summary_json: Optional[str] = None, draw: bool = True, address: Optional[str] = "local",
          workers: Optional[int] = None, threads: Optional[int] = None,
          chunk_frames: Optional[int] = None, images_per_item: int = IMAGES_PER_ITEM,
          track=None,
          jsonl: Optional[str] = None, csv: Optional[str] = None, plot: Optional[str] = None,
          max_frames: Optional[int] = None, pipelined: bool = True, boxes: Optional[str] = None,
          boxes_threshold: float = 0.0, estimator_options: Optional[dict] = None,
          progress: Optional[bool] = None, on_item: Optional[Callable[[dict], None]] = None,
          echo: Optional[Callable[[str], None]] = print, keep_work: bool = False,
          queue_depth: int = QUEUE_DEPTH) -> dict:
    """``edgepose infer`` on Ray: images, folders and video files over ``workers`` actors.

    ``model``: a model path, with ``threads`` (inference threads per worker, default 1) and
    ``estimator_options`` (the other :class:`edgepose.runner.EstimatorOptions` fields, a dict),
    or an :class:`~edgepose.runner.EstimatorOptions` holding them all (``threads`` overrides its).

    Writes what ``edgepose infer`` writes for one source: the annotated images / video in
    ``out`` (default ``edgepose_out``; none without ``draw``), the COCO results (``json_path``,
    default ``OUT/results.json``), the per-image/frame ``summary_json``, and for a video the
    ``jsonl`` / ``csv`` / ``plot`` files; ``echo`` gets the lines it prints. Several sources:
    one after the other in that order, every results and summary entry naming its ``source``.
    The outputs are written as they are merged (memory does not grow with the frames).
    ``track``: people IDs through videos (see :func:`edgepose.ray.plan.tracker_spec`): the tracker runs here, in
    frame order, so the IDs are those of ``edgepose infer --track``.
    ``on_item(info)``: called on this process after each item's record is written.
    Returns ``{"json", "summary_json", "results", "stats"}``: the paths written, the number of
    results entries, the job's statistics (per worker too)."""
    from ..files import sha256_file, write_atomic
    from ..runner import video_summary_line

    model, threads, estimator_options = _model_options(model, threads, estimator_options)
    workers = int(workers or DEFAULT_WORKERS)
    threads = int(threads or 1)
    chunk_frames = int(chunk_frames or DEFAULT_CHUNK_FRAMES)
    images_per_item = int(images_per_item)
    if min(workers, threads, chunk_frames, images_per_item) < 1:
        raise InputError("workers, threads, chunk_frames and images_per_item must be >= 1")
    sources = list(sources)
    if not sources:
        raise InputError("no source given")
    tracker = tracker_spec(track)
    address = check_address(address)
    import_ray()
    out_dir = out or "edgepose_out"
    if len(sources) > 1 and boxes:
        raise InputError("--boxes names image ids of one source: give one SOURCE with --boxes")
    boxes_by_image = None
    if boxes:
        from ..io import load_coco_boxes
        boxes_by_image = load_coco_boxes(boxes, score_threshold=boxes_threshold)
    spec = _estimator_spec(model, threads, estimator_options)
    digest, meta = _check_model(spec)
    if meta is not None and meta.family == "regression" and meta.decode.get("crop") == "follow" \
            and not spec.get("detector") and boxes_by_image is None:
        chunk_frames = 1 << 40     # each frame's crop follows the previous frame's pose: one item per video
    plan, items = plan_infer(sources, images_per_item, chunk_frames, draw, boxes_by_image, max_frames)
    videos = [p for p in plan if p["kind"] == "video"]
    if (tracker or jsonl or csv or plot) and not videos:
        raise InputError("--track, --jsonl, --csv and --plot need a video or camera source, got %s"
                         % ", ".join(sources))
    if (jsonl or csv or plot) and len(videos) > 1:
        raise InputError("--jsonl, --csv and --plot write one video's frames: give one video")
    manifest = {"job": None, "kind": "infer", "edgepose": __version__,
                "estimator": _estimator_identity(spec, digest),
                "sources": [[p["kind"], p["fingerprint"]] for p in plan],
                "options": {"images_per_item": images_per_item, "chunk_frames": chunk_frames,
                            "draw": draw, "max_frames": max_frames,
                            "boxes": sha256_file(boxes) if boxes else None,
                            "boxes_threshold": boxes_threshold if boxes else None}}
    manifest["job"] = job_hash(manifest)
    jobdir = JobDir(os.path.join(work_root(out_dir), manifest["job"]), manifest)
    ok = False
    try:
        for it in items:
            rec = jobdir.load(it["id"])
            if rec is not None and it["kind"] == "images" and draw and not all(
                    os.path.exists(os.path.join(out_dir, n)) for n in it["names"]):
                rec = None             # an annotated image is missing: run the item again
            it["_done"] = rec is not None
            if rec is not None and it["kind"] == "frames":
                it.update(mode=rec["mode"], pts_ok=rec["pts_ok"], seek=rec.get("seek", True))

        def make_record(item, res):
            if item["kind"] == "images":
                for name, data in zip(item["names"], res["drawn"]):
                    write_atomic(os.path.join(out_dir, name), data)
                return {"entries": res["entries"]}
            item.update(mode=res["mode"], pts_ok=res["pts_ok"])
            rec = {k: res[k] for k in ("frames_out", "schema", "mode", "pts_ok", "eof")}
            rec["seek"] = item["seek"]
            return rec

        with _Job(items, jobdir, spec, digest, address, workers,
                  threads, progress, on_item, queue_depth, make_record) as job:

            def rerun(it):           # a seeked chunk whose frames are not the decoded ones
                jobdir.drop(it["id"])
                it["seek"] = False
                it.pop("mode", None)
                job.run([it], again=True)
                return jobdir.load(it["id"])

            if job.done_before:
                logger.info("ray: resuming: %d of %d items were done before"
                            % (job.done_before, len(items)))
            job.run([it for it in items if not it["_done"]])
            while True:
                redo = seek_redo(items, jobdir)
                if not redo:
                    break
                logger.info("ray: %d video chunks run again decoding from the start (the "
                            "video's timestamps do not allow frame-exact seeking)" % len(redo))
                job.run(redo, again=True)
            t_merge = time.perf_counter()
            json_out = json_path or os.path.join(out_dir, "results.json")
            video = {"out_dir": out_dir if draw else None, "tracker": tracker, "jsonl": jsonl, "csv": csv,
                     "plot": plot, "pipelined": pipelined, "max_frames": max_frames or 0}
            several = len(plan) > 1
            n_img = n_fr = n_res = 0
            from ..files import JsonArrayWriter

            with contextlib.ExitStack() as outputs:   # streamed, as edgepose infer writes them
                res_w = outputs.enter_context(JsonArrayWriter(json_out))
                sum_w = outputs.enter_context(JsonArrayWriter(summary_json)) if summary_json else None
                for si, p in enumerate(plan):
                    src = p["source"] if several else None
                    results = Entries(res_w, src)
                    summary = Entries(sum_w, src, first=True)
                    if p["kind"] != "video":
                        for it in items:
                            if it["source"] != si:
                                continue
                            rec = jobdir.load(it["id"])
                            if rec is None:
                                raise EdgeposeError("item %s has no record after the run" % it["id"])
                            for e in rec["entries"]:
                                results.extend(e["coco"])
                                summary.append(e["summary"])
                                if echo is not None:
                                    echo("%s: %d people" % (e["summary"]["file"], e["people"]))
                        n_img += summary.count
                        n_res += results.count
                        continue
                    stats = merge_video(p, si, items, jobdir, results, summary, rerun, **video)
                    if stats["interrupted"]:
                        raise KeyboardInterrupt
                    if echo is not None:
                        echo(video_summary_line(p["source"], stats))
                    n_fr += summary.count
                    n_res += results.count
            if echo is not None:
                echo("wrote %s" % json_out)
            st = job.stats(n_img, n_fr, time.perf_counter() - t_merge)
        log_summary(st)
        ok = True
        return {"json": json_out, "summary_json": summary_json, "results": n_res, "stats": st}
    finally:
        jobdir.close(remove=ok and not keep_work)


def evaluate(model: "str | EstimatorOptions", coco: Sequence[str], images: Sequence[str], address: Optional[str] = "local",
             workers: Optional[int] = None, threads: Optional[int] = None,
             images_per_item: int = IMAGES_PER_ITEM, boxes: Optional[str] = None,
             boxes_threshold: float = 0.0, estimator_options: Optional[dict] = None,
             work_dir: Optional[str] = None, progress: Optional[bool] = None,
             on_item: Optional[Callable[[dict], None]] = None, keep_work: bool = False,
             queue_depth: int = QUEUE_DEPTH) -> dict:
    """``edgepose eval`` on Ray: the COCO keypoint stats of ``model`` on one (annotation file,
    images folder) set or several (pooled by :func:`edgepose.evaluate.merge_coco`, as
    ``edgepose eval`` pools them), the images spread over ``workers`` actors. Returns what
    :func:`edgepose.evaluate.evaluate_coco` returns (``stats``, ``images``, ``people``,
    ``results``, identical) and ``ray`` (the job's statistics). ``work_dir``: where the job's
    folder goes (default ``~/.cache/edgepose/ray``). ``model``, ``threads``,
    ``estimator_options``: as for :func:`infer` (a path with them, or an ``EstimatorOptions``)."""
    from ..evaluate import coco_keypoint_stats, coco_pairs, load_coco, merge_coco
    from ..files import sha256_file

    model, threads, estimator_options = _model_options(model, threads, estimator_options)
    workers = int(workers or DEFAULT_WORKERS)
    threads = int(threads or 1)
    if min(workers, threads, int(images_per_item)) < 1:
        raise InputError("workers, threads and images_per_item must be >= 1")
    pairs = coco_pairs(list(coco), list(images), boxes=boxes)
    if not pairs:
        raise InputError("no --coco file given")
    coco, images = [c for c, _ in pairs], [d for _, d in pairs]
    address = check_address(address)
    import_ray()
    if len(coco) == 1:          # exactly evaluate_coco's image list and paths
        gt, images_dir = load_coco(coco[0]), images[0]
    else:
        gt, images_dir = load_coco(merge_coco(list(zip(coco, images)))), "/"
    img_ids = sorted(gt.getImgIds())
    if not img_ids:
        raise InputError("annotation file lists no images: %s" % coco[0])
    paths = [os.path.abspath(os.path.join(images_dir, gt.loadImgs(i)[0]["file_name"])) for i in img_ids]
    for p in paths:
        if not os.path.isfile(p):
            raise InputError("image not found: %s" % p)
    boxes_by_image = None
    if boxes:
        from ..io import load_coco_boxes
        boxes_by_image = load_coco_boxes(boxes, score_threshold=boxes_threshold)
    spec = _estimator_spec(model, threads, estimator_options)
    digest, _ = _check_model(spec)
    items = []
    for a in range(0, len(img_ids), int(images_per_item)):
        b = min(a + int(images_per_item), len(img_ids))
        items.append({"id": "img-%06d-%06d" % (a, b), "kind": "eval",
                      "use_boxes": boxes_by_image is not None,
                      "images": [{"image_id": img_ids[k], "path": paths[k],
                                  "boxes": boxes_of(boxes_by_image, img_ids[k])} for k in range(a, b)]})
    manifest = {"job": None, "kind": "eval", "edgepose": __version__,
                "estimator": _estimator_identity(spec, digest),
                "coco": [[file_id(c), sha256_file(c), os.path.abspath(d)] for c, d in zip(coco, images)],
                "images": [file_id(p) for p in paths],
                "options": {"images_per_item": int(images_per_item),
                            "boxes": sha256_file(boxes) if boxes else None,
                            "boxes_threshold": boxes_threshold if boxes else None}}
    manifest["job"] = job_hash(manifest)
    root = work_dir or os.path.join(os.environ.get("XDG_CACHE_HOME") or
                                    os.path.join(os.path.expanduser("~"), ".cache"), "edgepose", "ray")
    jobdir = JobDir(os.path.join(root, manifest["job"]), manifest)
    ok = False
    try:
        for it in items:
            it["_done"] = jobdir.load(it["id"]) is not None
        with _Job(items, jobdir, spec, digest, address, workers, threads, progress, on_item,
                  queue_depth, lambda item, res: {"entries": res["entries"]}) as job:
            if job.done_before:
                logger.info("ray: resuming: %d of %d items were done before"
                            % (job.done_before, len(items)))
            job.run([it for it in items if not it["_done"]])
            t_merge = time.perf_counter()
            results: List[dict] = []
            for it in items:
                rec = jobdir.load(it["id"])
                if rec is None:
                    raise EdgeposeError("item %s has no record after the run" % it["id"])
                for e in rec["entries"]:
                    results.extend(e["coco"])
            out = {"stats": coco_keypoint_stats(gt, results, img_ids), "images": len(img_ids),
                   "people": len(results), "results": results}
            out["ray"] = job.stats(len(img_ids), 0, time.perf_counter() - t_merge)
        ok = True
        return out
    finally:
        jobdir.close(remove=ok and not keep_work)

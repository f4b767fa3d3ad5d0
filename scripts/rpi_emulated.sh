#!/usr/bin/env bash
# edgepose on a Raspberry Pi, emulated: Raspberry Pi OS 64-bit is Debian 12 "bookworm" (aarch64,
# Python 3.11). This builds an arm64 bookworm root with debootstrap, runs it under qemu-user with
# the CPU model of a Pi 4 (cortex-a72) and a Pi 5 (cortex-a76), installs the runtime there (the
# C++ extension compiled for aarch64: its NEON path), and checks on ARM:
#   a) the runtime tests that fit under emulation;
#   b) `edgepose infer` of the real Lightweight OpenPose rpi-int8 TFLite model on a few images,
#      its keypoints compared bit for bit with the x86 TFLite interpreter's run (the rpi-int8
#      accuracy report is measured on x86: this is the claim that it predicts the Pi exactly);
#   c) the C++ decode on aarch64 against the x86 decode on real heatmaps/PAFs (exact equality);
#   d) examples/rpi_camera.py end to end on a fake picamera2 camera, writing an annotated video.
# Then it prints a summary (also written to OUT/summary.json).
#
# Needs root (debootstrap, chroot, mounts), Debian's apt and PyPI, and the repository's .venv on
# the host (x86 side: the export and the reference runs). Emulation is 25-350x slower than a Pi
# for inference, so the model input is small and the images few.
#
#   sudo scripts/rpi_emulated.sh                      # everything, both CPU models
#   sudo scripts/rpi_emulated.sh --setup-only         # only build (or unpack) the arm64 root
#   sudo scripts/rpi_emulated.sh --rebuild            # ignore the cached root tarball
#   sudo scripts/rpi_emulated.sh --keep-root          # rerun the checks in the last run's root and
#                                                     # install (edgepose/ unchanged since)
#
# Settings (environment):
#   EDGEPOSE_RPI_CACHE       cached prepared root   (default ~/.cache/edgepose/rpi-root.tar.zst)
#   EDGEPOSE_RPI_WORK        root + outputs         (default /tmp/edgepose-rpi)
#   EDGEPOSE_RPI_CPUS        qemu CPU models        (default "cortex-a72 cortex-a76": Pi 4, Pi 5)
#   EDGEPOSE_RPI_INPUT_SIZE  model input HxW        (default 256x352)
#   EDGEPOSE_RPI_MODEL       an existing rpi-int8 .tflite to use instead of exporting one
#   EDGEPOSE_ASSETS          test assets            (default ../shared/assets)
# QEMU_CPU is always set to one of EDGEPOSE_RPI_CPUS; never `max` (qemu 7.2's `max` computes
# XNNPACK's int8 convolutions wrong).
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
HERE="$REPO/scripts/rpi"
CACHE=${EDGEPOSE_RPI_CACHE:-$HOME/.cache/edgepose/rpi-root.tar.zst}
WORK=${EDGEPOSE_RPI_WORK:-/tmp/edgepose-rpi}
CPUS=${EDGEPOSE_RPI_CPUS:-"cortex-a72 cortex-a76"}
INPUT_SIZE=${EDGEPOSE_RPI_INPUT_SIZE:-256x352}
ASSETS=$(cd "${EDGEPOSE_ASSETS:-$REPO/../shared/assets}" && pwd)
ROOT="$WORK/root"
OUT="$WORK/out"
SUITE=bookworm
MIRROR=${EDGEPOSE_RPI_MIRROR:-http://deb.debian.org/debian}
VENV=/opt/edgepose-venv                    # inside the root
SETUP_ONLY=0
REBUILD=0
KEEP=0
for a in "$@"; do
  case "$a" in
    --setup-only) SETUP_ONLY=1 ;;
    --rebuild) REBUILD=1 ;;
    --keep-root) KEEP=1 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed 's/^# \{0,1\}//; /^set -euo/d'; exit 0 ;;
    *) echo "rpi_emulated.sh: unknown argument: $a" >&2; exit 2 ;;
  esac
done
for c in $CPUS; do
  case "$c" in
    cortex-a72|cortex-a76) ;;
    *) echo "rpi_emulated.sh: EDGEPOSE_RPI_CPUS: '$c' is not a Raspberry Pi CPU model (cortex-a72, cortex-a76)" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "rpi_emulated.sh: needs root (debootstrap, chroot, mounts)" >&2; exit 2; }
[ -x "$REPO/.venv/bin/edgepose" ] || { echo "rpi_emulated.sh: $REPO/.venv is missing (the x86 side runs in it)" >&2; exit 2; }
[ -f "$ASSETS/models/lwop_hpe0001.pth" ] || { echo "rpi_emulated.sh: assets not found at $ASSETS" >&2; exit 2; }

log() { printf '[%s] %s\n' "$(date -u +%H:%M:%S)" "$*"; }
NICE="nice -n 10"
T0=$(date +%s)

# ------------------------------------------------------------------------------------------------
# host: qemu-user (static, registered with binfmt_misc), debootstrap
# ------------------------------------------------------------------------------------------------
need=()
command -v qemu-aarch64-static >/dev/null || need+=(qemu-user-static)
command -v update-binfmts >/dev/null || need+=(binfmt-support)
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v zstd >/dev/null || need+=(zstd)
if [ ${#need[@]} -gt 0 ]; then
  log "installing on the host: ${need[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
[ -e /proc/sys/fs/binfmt_misc/register ] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
[ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || update-binfmts --enable qemu-aarch64 \
  || update-binfmts --import qemu-aarch64
grep -q '^enabled' /proc/sys/fs/binfmt_misc/qemu-aarch64 \
  || { echo "rpi_emulated.sh: binfmt_misc has no enabled qemu-aarch64 entry" >&2; exit 1; }

# ------------------------------------------------------------------------------------------------
# the root's mounts: /proc with an ARM cpuinfo over the host's, /dev, /sys, the repo and assets
# ------------------------------------------------------------------------------------------------
MOUNTS=()
umount_all() {
  local i
  for ((i=${#MOUNTS[@]}-1; i>=0; i--)); do umount -l "${MOUNTS[$i]}" 2>/dev/null || true; done
  MOUNTS=()
}
trap umount_all EXIT
bind() {  # bind SRC DST [ro]
  mkdir -p "$2"
  mount --bind "$1" "$2"; MOUNTS+=("$2")
  if [ "${3:-}" = ro ]; then mount -o remount,bind,ro "$2"; fi
}
mount_root() {  # mount_root CPU
  umount_all
  mkdir -p "$ROOT/proc" "$ROOT/sys" "$ROOT/dev"
  mount -t proc proc "$ROOT/proc"; MOUNTS+=("$ROOT/proc")
  # qemu 7.2 hands the guest the host's x86 /proc/cpuinfo; pytorch-cpuinfo (onnxruntime,
  # XNNPACK) crashes on it. The guest sees the Pi's instead (its HWCAPs come from QEMU_CPU).
  "$HERE/cpuinfo.sh" "$1" > "$WORK/cpuinfo.$1"
  mount --bind "$WORK/cpuinfo.$1" "$ROOT/proc/cpuinfo"; MOUNTS+=("$ROOT/proc/cpuinfo")
  bind /dev "$ROOT/dev"
  bind /sys "$ROOT/sys" ro
  cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
  bind "$ASSETS" "$ROOT/assets" ro
  bind "$OUT" "$ROOT/out"
}
# run a command in the root as the given Pi's CPU
in_root() {  # in_root CPU CMD...
  local cpu=$1; shift
  $NICE chroot "$ROOT" /usr/bin/env -i QEMU_CPU="$cpu" HOME=/root LANG=C.UTF-8 \
    PATH="$VENV/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
    PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_DEFAULT_TIMEOUT=180 EDGEPOSE_ASSETS=/assets \
    OMP_NUM_THREADS=2 "$@"
}

# ------------------------------------------------------------------------------------------------
# the root: from the cached tarball, or debootstrap + Python 3.11 + the runtime's wheels
# ------------------------------------------------------------------------------------------------
mkdir -p "$WORK" "$OUT" "$(dirname "$CACHE")"
for m in proc/cpuinfo proc sys dev assets out; do umount -l "$ROOT/$m" 2>/dev/null || true; done
if [ $KEEP = 1 ] && [ ! -x "$ROOT/src/.venv/bin/edgepose" ] && [ ! -x "$ROOT$VENV/bin/edgepose" ]; then
  echo "rpi_emulated.sh: --keep-root: no installed root at $ROOT (run without it first)" >&2; exit 2
fi
if grep -q " $ROOT/" /proc/mounts; then
  echo "rpi_emulated.sh: something is still mounted under $ROOT; unmount it first" >&2; exit 1
fi
ts=$(date +%s)
if [ $KEEP = 1 ]; then
  log "keeping the root of the last run: $ROOT"
  SETUP_KIND=kept
elif [ -s "$CACHE" ] && [ $REBUILD = 0 ]; then
  rm -rf --one-file-system "$ROOT" && mkdir -p "$ROOT"
  log "unpacking the cached arm64 root $CACHE"
  zstd -dc -T0 "$CACHE" | tar -x -C "$ROOT" --numeric-owner
  SETUP_KIND=cached
else
  rm -rf --one-file-system "$ROOT" && mkdir -p "$ROOT"
  SETUP_KIND=cold
  log "debootstrap --arch=arm64 --foreign --variant=minbase $SUITE (first stage)"
  $NICE debootstrap --arch=arm64 --foreign --variant=minbase \
    --include=python3,python3-venv,python3-dev,g++,make,cmake,ninja-build,ca-certificates \
    "$SUITE" "$ROOT" "$MIRROR" > "$WORK/debootstrap1.log" 2>&1 \
    || { tail -20 "$WORK/debootstrap1.log"; exit 1; }
  cp /usr/bin/qemu-aarch64-static "$ROOT/usr/bin/"
  log "debootstrap second stage (emulated)"
  $NICE chroot "$ROOT" /usr/bin/env -i QEMU_CPU=cortex-a72 PATH=/usr/sbin:/usr/bin:/sbin:/bin \
    /debootstrap/debootstrap --second-stage > "$WORK/debootstrap2.log" 2>&1 \
    || { tail -20 "$WORK/debootstrap2.log"; exit 1; }
  echo "deb $MIRROR $SUITE main" > "$ROOT/etc/apt/sources.list"
  # pip in the root trusts the host's CA bundle (this network re-signs TLS)
  cp /etc/ssl/certs/ca-certificates.crt "$ROOT/etc/ssl/host-ca.crt"
  printf '[global]\ncert = /etc/ssl/host-ca.crt\n' > "$ROOT/etc/pip.conf"
  mount_root cortex-a72
  log "Python venv + the runtime's aarch64 wheels (numpy, opencv-python-headless, onnxruntime, ai-edge-litert)"
  in_root cortex-a72 /usr/bin/python3 -m venv --system-site-packages "$VENV"
  cp "$REPO/constraints.txt" "$ROOT/tmp/constraints.txt"
  in_root cortex-a72 pip install -q -c /tmp/constraints.txt numpy opencv-python-headless onnxruntime \
    ai-edge-litert scipy pytest hypothesis > "$WORK/pip-wheels.log" 2>&1 \
    || { tail -20 "$WORK/pip-wheels.log"; exit 1; }
  umount_all
  rm -rf "$ROOT/var/cache/apt/archives/"*.deb "$ROOT/debootstrap"
  log "caching the prepared root: $CACHE"
  tar -C "$ROOT" --numeric-owner -cf - . | zstd -q -T0 -3 -o "$CACHE.tmp" && mv "$CACHE.tmp" "$CACHE"
fi
SETUP_S=$(( $(date +%s) - ts ))
log "root ready ($SETUP_KIND) in ${SETUP_S}s: $(du -sh "$CACHE" 2>/dev/null | cut -f1) tarball"
grep -q '^cert' "$ROOT/etc/pip.conf"  # the root's pip trusts the host's CA bundle
cp /etc/ssl/certs/ca-certificates.crt "$ROOT/etc/ssl/host-ca.crt"
if [ $SETUP_ONLY = 1 ]; then
  echo "{\"setup_kind\": \"$SETUP_KIND\", \"setup_s\": $SETUP_S}" > "$OUT/setup.json"
  exit 0
fi

# ------------------------------------------------------------------------------------------------
# x86 side (the repository's .venv): the rpi-int8 model, the images, the reference runs
# ------------------------------------------------------------------------------------------------
X86PY="$REPO/.venv/bin/python"
X86EP="$REPO/.venv/bin/edgepose"
rm -rf "$OUT/x86" "$OUT/images" "$OUT"/arm-* "$OUT/summary.json"
mkdir -p "$OUT/x86" "$OUT/images" "$OUT/model"
MODEL_HOST=${EDGEPOSE_RPI_MODEL:-$OUT/model/lwop.int8.tflite}
if [ ! -s "$MODEL_HOST" ]; then
  log "x86: exporting the Lightweight OpenPose checkpoint to rpi-int8 at $INPUT_SIZE"
  (cd /tmp && $NICE "$X86EP" export "$ASSETS/models/lwop_hpe0001.pth" --target rpi-int8 \
     --calib "$ASSETS/people" --input-size "$INPUT_SIZE" -o "$MODEL_HOST") > "$OUT/export.log" 2>&1 \
    || { tail -5 "$OUT/export.log"; exit 1; }
fi
cp "$MODEL_HOST" "$OUT/model/model.tflite"
MODEL=/out/model/model.tflite          # the same file, as the root sees it
# the images: three COCO photos (shrunk to the model) and one small image (enlarged)
for f in 000000196141.jpg 000000000785.jpg 000000040083.jpg; do cp "$ASSETS/coco/$f" "$OUT/images/"; done
"$X86PY" -c "import cv2, sys; img = cv2.imread(sys.argv[1]); cv2.imwrite(sys.argv[2], cv2.resize(img, (200, 134), interpolation=cv2.INTER_AREA))" \
  "$ASSETS/coco/000000196141.jpg" "$OUT/images/small_000000196141.png"
IMAGES=$(cd "$OUT/images" && ls | sort)
N_IMAGES=$(echo "$IMAGES" | wc -l)
img_args() { for f in $IMAGES; do printf '%s/%s ' "$1" "$f"; done; }
log "x86: edgepose infer + stage records on $N_IMAGES images"
(cd /tmp && $NICE "$X86EP" infer "$OUT/model/model.tflite" "$OUT/images" --no-draw --threads 2 \
   --json "$OUT/x86/results.json" --summary-json "$OUT/x86/summary.json") > "$OUT/x86/infer.log" 2>&1 \
  || { tail -5 "$OUT/x86/infer.log"; exit 1; }
(cd /tmp && $NICE "$X86PY" "$HERE/exactness.py" record "$OUT/model/model.tflite" $(img_args "$OUT/images") \
   -o "$OUT/x86/record.npz") > "$OUT/x86/record.log" 2>&1 || { tail -5 "$OUT/x86/record.log"; exit 1; }
(cd /tmp && $NICE "$X86PY" "$HERE/exactness.py" record "$OUT/model/model.tflite" $(img_args "$OUT/images") \
   --legacy-preprocessing -o "$OUT/x86/record_legacy.npz") > "$OUT/x86/record_legacy.log" 2>&1 \
  || { tail -5 "$OUT/x86/record_legacy.log"; exit 1; }
(cd /tmp && $NICE "$X86PY" "$HERE/interp_check.py" $(img_args "$OUT/images") -o "$OUT/x86/interp.npz") \
  > "$OUT/x86/interp.log" 2>&1 || { tail -5 "$OUT/x86/interp.log"; exit 1; }

# ------------------------------------------------------------------------------------------------
# ARM side: install the runtime from this tree (C++ extension compiled for aarch64)
# ------------------------------------------------------------------------------------------------
mount_root cortex-a72
[ $KEEP = 1 ] || rm -rf --one-file-system "$ROOT/src"
mkdir -p "$ROOT/src"
(cd "$REPO" && git ls-files -c -o --exclude-standard -z | xargs -0 tar -cf - --ignore-failed-read 2>/dev/null) \
  | tar -xf - -C "$ROOT/src"
cp "$REPO/constraints.txt" "$ROOT/tmp/constraints.txt"
# README's Raspberry Pi install line as written, in /src/.venv: Raspberry Pi OS's numpy (1.24.2,
# Debian 12's python3-numpy) seen through --system-site-packages, the extension compiled by the
# OS's g++. python3-picamera2 is in Raspberry Pi's archive, not Debian's: python3-numpy (its
# dependency) stands in for it here, and tests/fake_picamera2 for picamera2 itself.
RPI_CMD=$(sed -n '/<!-- rpi-install -->/,/<!-- \/rpi-install -->/p' "$REPO/README.md" | grep -v '^```' | grep -v '<!--' || true)
ts=$(date +%s)
INSTALL_KIND=""
if [ $KEEP = 1 ]; then
  # the compiled extension is kept; the Python files are refreshed from this tree
  if [ -x "$ROOT/src/.venv/bin/edgepose" ]; then VENV=/src/.venv; fi
  SITE=$(in_root cortex-a72 python -c "import os, edgepose; print(os.path.dirname(edgepose.__file__))")
  for d in edgepose:. exporters:exporters calibration:calibration; do
    (cd "$ROOT/src/${d%%:*}" && find . -name '*.py' -print0 | tar -cf - --null -T -) | tar -xf - -C "$ROOT$SITE/${d##*:}"
  done
  INSTALL_KIND="kept from the last run, Python files refreshed"
elif [ -n "$RPI_CMD" ] && grep -q 'sudo apt install -y python3-picamera2' <<<"$RPI_CMD"; then
  CMD=${RPI_CMD/sudo apt install -y python3-picamera2/apt-get install -y -q python3-numpy}
  log "aarch64: README's install line: $CMD"
  if in_root cortex-a72 env PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
      sh -c "apt-get update -qq && cd /src && $CMD && pip install -q pytest hypothesis pycocotools 'numpy<2'" \
      > "$OUT/arm-install.log" 2>&1; then
    VENV=/src/.venv
    INSTALL_KIND="README line (numpy $(in_root cortex-a72 python -c 'import numpy; print(numpy.__version__)'))"
  else
    log "aarch64: README's install line FAILED (tail of $OUT/arm-install.log):"; tail -15 "$OUT/arm-install.log"
  fi
fi
if [ -z "$INSTALL_KIND" ]; then
  log "aarch64: pip install /src into the root's prepared venv (constraints.txt)"
  in_root cortex-a72 pip install -q -c /tmp/constraints.txt "/src[ort,tflite,eval]" >> "$OUT/arm-install.log" 2>&1 \
    || { tail -20 "$OUT/arm-install.log"; exit 1; }
  INSTALL_KIND="constraints.txt venv"
fi
INSTALL_S=$(( $(date +%s) - ts ))
in_root cortex-a72 sh -c 'cd /tmp && python -c "import platform, edgepose.decode as d; assert d.has_extension(), \"no extension\"; print(platform.machine(), platform.python_version())"' \
  > "$OUT/arm-platform.txt"
log "aarch64: installed in ${INSTALL_S}s ($(cat "$OUT/arm-platform.txt"), $INSTALL_KIND)"

# ------------------------------------------------------------------------------------------------
# the checks, per CPU model
# ------------------------------------------------------------------------------------------------
# the runtime tests (conftest.RUNTIME_TESTS where the tree has it) + the Pi camera demo's test
TESTS=$("$X86PY" - "$REPO/tests/conftest.py" <<'PY'
import ast, os, sys
names = ["test_runtime_core.py", "test_decode.py", "test_reference.py", "test_track.py"]
for node in ast.parse(open(sys.argv[1]).read()).body:
    if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "RUNTIME_TESTS" for t in node.targets):
        names = list(ast.literal_eval(node.value))
names += [n for n in ("test_preprocess_exact.py", "test_rpi_camera.py") if n not in names]
names = [n for n in names if os.path.exists(os.path.join(os.path.dirname(sys.argv[1]), n))]
print(" ".join("/src/tests/" + n for n in names))
PY
)
declare -A DIFFER TESTS_PASSED TESTS_FAILED TESTS_SKIPPED PREPROC_EQ NEON_EQ MODEL_EQ JSON_DIFF RUN_S
TESTS_CPU=${CPUS%% *}
for cpu in $CPUS; do
  mount_root "$cpu"
  A="$OUT/arm-$cpu"
  mkdir -p "$A"
  ts=$(date +%s)
  if [ "$cpu" = "$TESTS_CPU" ]; then
    log "$cpu: runtime tests ($(echo $TESTS | wc -w) files)"
    in_root "$cpu" env EDGEPOSE_TEST_MODEL=$MODEL sh -c "cd /tmp && python -m pytest -q -p no:cacheprovider -o addopts='' -rfEs $TESTS" \
      > "$A/pytest.log" 2>&1 || true
    tail -1 "$A/pytest.log"
    last=$(tail -1 "$A/pytest.log")
    TESTS_PASSED[$cpu]=$( (grep -oE '[0-9]+ passed' <<<"$last" || echo 0) | cut -d' ' -f1)
    TESTS_FAILED[$cpu]=$( (grep -oE '[0-9]+ (failed|errors?)' <<<"$last" || true) | awk '{s+=$1} END {print s+0}')
    TESTS_SKIPPED[$cpu]=$( (grep -oE '[0-9]+ skipped' <<<"$last" || echo 0) | cut -d' ' -f1)
  fi
  log "$cpu: edgepose infer on $N_IMAGES images"
  in_root "$cpu" sh -c "cd /tmp && edgepose infer $MODEL /out/images --no-draw --threads 2 --json /out/arm-$cpu/results.json --summary-json /out/arm-$cpu/summary.json" \
    > "$A/infer.log" 2>&1 || { tail -5 "$A/infer.log"; exit 1; }
  log "$cpu: stage records (preprocessing, model on the x86 input, NEON decode of the x86 maps)"
  in_root "$cpu" sh -c "cd /tmp && python /src/scripts/rpi/exactness.py record $MODEL $(img_args /out/images) --reference /out/x86/record.npz -o /out/arm-$cpu/record.npz" \
    > "$A/record.log" 2>&1 || { tail -5 "$A/record.log"; exit 1; }
  log "$cpu: the same with the previous preprocessing (OpenCV's INTER_AREA / INTER_LINEAR), for comparison"
  in_root "$cpu" sh -c "cd /tmp && python /src/scripts/rpi/exactness.py record $MODEL $(img_args /out/images) --legacy-preprocessing --reference /out/x86/record_legacy.npz -o /out/arm-$cpu/record_legacy.npz" \
    > "$A/record_legacy.log" 2>&1 || { tail -5 "$A/record_legacy.log"; exit 1; }
  in_root "$cpu" sh -c "cd /tmp && python /src/scripts/rpi/interp_check.py $(img_args /out/images) -o /out/arm-$cpu/interp.npz" \
    > "$A/interp.log" 2>&1 || { tail -5 "$A/interp.log"; exit 1; }
  if [ "$cpu" = "$TESTS_CPU" ]; then
    log "$cpu: examples/rpi_camera.py on the fake Pi camera (tests/fake_picamera2)"
    in_root "$cpu" env PYTHONPATH=/src/tests/fake_picamera2 FAKE_PICAMERA2_SOURCE=/assets/videos/arm_wrestling.mp4 \
      FAKE_PICAMERA2_LOG=/out/arm-$cpu/camera.jsonl sh -c "cd /tmp && python /src/examples/rpi_camera.py $MODEL --width 640 --height 360 --threads 2 --frames 6 --track --out /out/arm-$cpu/rpi_camera.mp4 --jsonl /out/arm-$cpu/rpi_camera.jsonl" \
      > "$A/camera.log" 2>&1 || { tail -5 "$A/camera.log"; exit 1; }
    tail -1 "$A/camera.log"
    VIDEO="$A/rpi_camera.mp4"
  fi
  RUN_S[$cpu]=$(( $(date +%s) - ts ))
  # compare with x86 (on the host: plain numpy)
  echo "== $cpu vs x86: stage records" > "$A/compare.txt"
  "$X86PY" "$HERE/exactness.py" compare "$OUT/x86/record.npz" "$A/record.npz" --json "$A/compare.json" >> "$A/compare.txt" || true
  echo "== $cpu vs x86 with the previous preprocessing (OpenCV's INTER_AREA / INTER_LINEAR)" >> "$A/compare.txt"
  "$X86PY" "$HERE/exactness.py" compare "$OUT/x86/record_legacy.npz" "$A/record_legacy.npz" --json "$A/compare_legacy.json" >> "$A/compare.txt" || true
  echo "== $cpu vs x86: resampling modes and edgepose.preprocess" >> "$A/compare.txt"
  "$X86PY" "$HERE/interp_check.py" --compare "$OUT/x86/interp.npz" "$A/interp.npz" >> "$A/compare.txt" || true
  echo "== $cpu vs x86: edgepose infer's JSON (results.json, summary.json)" >> "$A/compare.txt"
  "$X86PY" "$HERE/json_diff.py" "$OUT/x86/results.json" "$A/results.json" "$OUT/x86/summary.json" "$A/summary.json" \
    --json "$A/json_diff.json" >> "$A/compare.txt" || true
  cat "$A/compare.txt"
done
umount_all

# ------------------------------------------------------------------------------------------------
# summary
# ------------------------------------------------------------------------------------------------
TOTAL_S=$(( $(date +%s) - T0 ))
"$X86PY" - "$OUT" "$SETUP_KIND" "$SETUP_S" "$INSTALL_S" "$TOTAL_S" "$N_IMAGES" "$INPUT_SIZE" "$TESTS_CPU" \
  "${TESTS_PASSED[$TESTS_CPU]:-0}" "${TESTS_FAILED[$TESTS_CPU]:-0}" "${TESTS_SKIPPED[$TESTS_CPU]:-0}" "${VIDEO:-}" "$INSTALL_KIND" $CPUS <<'PY'
import datetime, json, os, sys
out, kind, setup_s, install_s, total_s, n_img, size, tcpu, npass, nfail, nskip, video, how = sys.argv[1:14]
cpus = sys.argv[14:]
s = {"date": datetime.datetime.utcnow().strftime("%Y-%m-%d %H:%M UTC"), "root": kind, "setup_s": int(setup_s),
     "install_s": int(install_s), "install": how, "total_s": int(total_s), "images": int(n_img), "input_size": size,
     "platform": open(os.path.join(out, "arm-platform.txt")).read().strip(),
     "tests": {"cpu": tcpu, "passed": int(npass), "failed": int(nfail), "skipped": int(nskip)},
     "video": video, "cpus": {}}
print("\n==== Raspberry Pi (emulated aarch64, Debian 12 bookworm, %s) ====" % s["platform"])
print("setup: %s root in %ss; runtime install (%s; extension compiled for aarch64) %ss; all %ss"
      % (kind, setup_s, how, install_s, total_s))
print("runtime tests under %s: %s passed, %s failed, %s skipped" % (tcpu, npass, nfail, nskip))
for cpu in cpus:
    c = json.load(open(os.path.join(out, "arm-" + cpu, "compare.json")))["kinds"]
    j = json.load(open(os.path.join(out, "arm-" + cpu, "json_diff.json")))
    g = lambda k: (c[k]["differ"], c[k]["values"])
    r = {"infer_json": j, "preprocess": g("input"), "model_on_x86_input": [a + b for a, b in zip(g("ref_heatmaps"), g("ref_pafs"))],
         "raw_outputs": [a + b for a, b in zip(g("heatmaps"), g("pafs"))],
         "neon_decode_of_x86_maps": [a + b for a, b in zip(g("ref_keypoints"), g("ref_scores"))],
         "keypoints": [a + b for a, b in zip(g("keypoints"), g("scores"))]}
    old = json.load(open(os.path.join(out, "arm-" + cpu, "compare_legacy.json")))["kinds"]
    r["previous_preprocessing"] = {"preprocess": [old["input"]["differ"], old["input"]["values"]],
                                   "keypoints": [old["keypoints"]["differ"] + old["scores"]["differ"],
                                                 old["keypoints"]["values"] + old["scores"]["values"]]}
    s["cpus"][cpu] = r
    print("%s (%s): infer JSON %d of %d values differ from x86 (%d images); full precision: keypoints+scores %d of %d,"
          " model input %d of %d, raw outputs %d of %d, model on x86's input %d of %d, NEON decode of x86's maps %d of %d"
          % (cpu, {"cortex-a72": "Pi 4", "cortex-a76": "Pi 5"}[cpu], j["differ"], j["values"], int(n_img),
             r["keypoints"][0], r["keypoints"][1], r["preprocess"][0], r["preprocess"][1], r["raw_outputs"][0],
             r["raw_outputs"][1], r["model_on_x86_input"][0], r["model_on_x86_input"][1],
             r["neon_decode_of_x86_maps"][0], r["neon_decode_of_x86_maps"][1]))
    pp = r["previous_preprocessing"]
    print("    with the previous preprocessing (OpenCV INTER_AREA / INTER_LINEAR): model input %d of %d values differ,"
          " keypoints+scores %d of %d" % (pp["preprocess"][0], pp["preprocess"][1], pp["keypoints"][0], pp["keypoints"][1]))
print("camera demo video: %s" % (video or "(not run)"))
with open(os.path.join(out, "summary.json"), "w") as f:
    json.dump(s, f, indent=1)
print("summary: %s" % os.path.join(out, "summary.json"))
PY

"""edgepose's build and metadata: ONE definition of the C++ extension, for Python 3.6 to 3.13.

setuptools + pybind11 because they exist on every Python the runtime supports (Jetson Nano /
JetPack 4.6: CPython 3.6 with pip 21.3.1, whose newest setuptools is 59.6 and newest pybind11
2.12; JetPack 5: 3.8; JetPack 6: 3.10; desktops: 3.11-3.13) and need nothing but a C++17
compiler (g++ >= 7.5, JetPack 4.6's): no CMake (Ubuntu 18.04's is 3.10) and no
scikit-build-core (Python >= 3.9). The metadata lives here, not in pyproject.toml's [project]
table, because setuptools 59.6 does not read PEP 621 metadata.

Environment variables read at build time:
- EDGEPOSE_SANITIZE=1: the ASan + UBSan build of the extension for fuzzing
  (benchmarks/fuzz_ext.py builds it into its own directory; never install or ship it).
- EDGEPOSE_SYSTEM_OPENCV=1: leave opencv-python-headless out of the requirements, for a device
  whose OpenCV comes from its own packages (JetPack's python3-opencv with GStreamer, seen from a
  venv made with --system-site-packages).
"""
import glob
import os
import re

from pybind11.setup_helpers import ParallelCompile, Pybind11Extension, build_ext
from setuptools import find_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))

# Optimised and portable: -O3, no -march=native (a wheel must run on the Jetson / Pi it is copied
# to; SSE2 on x86-64 and NEON on aarch64 are baseline). -fno-wrapv undoes CPython's -fwrapv.
RELEASE_FLAGS = ["-O3", "-fno-math-errno", "-fno-wrapv", "-Wall"]
SANITIZE_FLAGS = ["-fsanitize=address,undefined,float-cast-overflow", "-fno-sanitize-recover=all",
                  "-fno-omit-frame-pointer"]


def _flag(name):
    return os.environ.get(name, "").strip().lower() not in ("", "0", "no", "off", "false")


def extension(sanitize=False):
    """The extension ``edgepose._ext`` (every cpp_ext/*.cpp), release or sanitized."""
    sources = sorted(os.path.relpath(p, HERE) for p in glob.glob(os.path.join(HERE, "cpp_ext", "*.cpp")))
    if sanitize:
        cflags = ["-O1", "-g", "-Wall", "-D_GLIBCXX_ASSERTIONS"] + SANITIZE_FLAGS
        lflags = list(SANITIZE_FLAGS)
    else:
        cflags, lflags = list(RELEASE_FLAGS), []
    headers = sorted(os.path.relpath(p, HERE) for p in glob.glob(os.path.join(HERE, "cpp_ext", "*.hpp")))
    return Pybind11Extension("edgepose._ext", sources, include_dirs=["cpp_ext"], depends=headers,
                             cxx_std=17, extra_compile_args=cflags, extra_link_args=lflags)


def _version():
    with open(os.path.join(HERE, "edgepose", "_version.py")) as f:
        return re.search(r'__version__ = "([^"]+)"', f.read()).group(1)


def _readme():
    with open(os.path.join(HERE, "README.md"), encoding="utf-8") as f:
        return f.read()


# Runtime core: what a Jetson or a Raspberry Pi needs to run an exported model. numpy 1.17 is
# Ubuntu 20.04's (JetPack 5); on Python 3.6 pip itself stops at numpy 1.19.5 and onnxruntime
# 1.10.0, and OpenCV at 4.6.0.66 (its last cp36/abi3 wheels: newer releases are sdists there).
REQUIRES = ["numpy>=1.17"]
if not _flag("EDGEPOSE_SYSTEM_OPENCV"):
    REQUIRES += ["opencv-python-headless>=4.5; python_version>='3.7'",
                 "opencv-python-headless>=4.5,<=4.6.0.66; python_version<'3.7'"]

EXTRAS = {
    # 1.10.0 is the newest onnxruntime for Python 3.6 and for numpy < 1.21 (JetPack 4.6 / 5)
    "ort": ["onnxruntime>=1.10"],
    "tflite": ["ai-edge-litert>=1.0; platform_system == 'Linux'"],
    "eval": ["pycocotools>=2.0.6", "tqdm"],
    "export": [
        "torch>=2.1",
        "onnx>=1.14",
        "onnxsim>=0.4.33",
        # INT8: quantize_static(calibration_cache_path=...) takes edgepose's own ranges (2026)
        "onnxruntime>=1.26",
    ],
    # TFLite conversion (no TensorFlow): litert-torch brings ai-edge-quantizer and litert-converter
    # (about 0.9 GB with jax and transformers; it pins typing_extensions<=4.12).
    "tflite-export": ["litert-torch>=0.10", "ai-edge-litert>=2.3"],
    # TensorRT itself comes with JetPack. Device memory: pycuda, built against the device's CUDA
    # (JetPack 4.6 has CUDA 10.2, older than any cuda-python), or cuda-python, whose major
    # version must match JetPack's CUDA (11.x on JetPack 5, 12.x on JetPack 6).
    "jetson": ["pycuda; python_version<'3.8'", "cuda-python; python_version>='3.8'"],
    # edgepose track / infer --track: the Hungarian assignment (scipy's linear_sum_assignment:
    # 1-4 us for 2-20 people, 10x faster than lap.lapjv here; benchmarks/tracking.py)
    "track": ["scipy>=1.5"],
    # pybind11 + setuptools: tests/test_fuzz_ext.py builds the ASan/UBSan extension with them
    "test": ["pytest>=7", "hypothesis>=6", "vermin>=1.5", "scipy", "pybind11>=2.9", "setuptools"],
    # edgepose infer/eval --ray: Ray core is enough (no dashboard, no Ray Data); the CLI's local
    # instance and `ray start --head` clusters both run on it
    "ray": ["ray>=2.9"],
    # --backend openvino: x86 CPUs with VNNI/AMX run the INT8 Q/DQ models 1.2-1.4x faster than
    # with onnxruntime (README, INT8; benchmarks/openvino_speed.py)
    "openvino": ["openvino>=2024.0"],
}
EXTRAS["all"] = sorted(set(r for k in ("ort", "tflite", "eval", "export", "tflite-export", "test",
                                        "track", "ray", "openvino") for r in EXTRAS[k]))

# edgepose/ is the runtime; exporters/ and calibration/ (the workstation part: Python >= 3.8, torch,
# onnx) are installed inside it as edgepose.exporters and edgepose.calibration
PACKAGES = find_packages(include=["edgepose", "edgepose.*"]) + [
    "edgepose." + p for p in find_packages(include=["exporters", "exporters.*", "calibration", "calibration.*"])]

# compile the extension's sources in parallel (NPY_NUM_BUILD_JOBS sets the number of jobs)
ParallelCompile("NPY_NUM_BUILD_JOBS").install()

setup(
    name="edgepose",
    version=_version(),
    description="Take a trained 2D human-pose network from PyTorch to a fast, correct deployment "
                "on edge hardware",
    long_description=_readme(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.6",
    packages=PACKAGES,
    package_dir={"edgepose": "edgepose", "edgepose.exporters": "exporters",
                 "edgepose.calibration": "calibration"},
    ext_modules=[extension(sanitize=_flag("EDGEPOSE_SANITIZE"))],
    cmdclass={"build_ext": build_ext},
    install_requires=REQUIRES,
    extras_require=EXTRAS,
    entry_points={"console_scripts": ["edgepose = edgepose.cli:main"]},
    zip_safe=False,
)

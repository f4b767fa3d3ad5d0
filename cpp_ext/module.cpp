// Placeholder: the post-processing kernels are being written (issue 2).
#include <pybind11/pybind11.h>
PYBIND11_MODULE(_ext, m) { m.doc() = "edgepose post-processing core"; }

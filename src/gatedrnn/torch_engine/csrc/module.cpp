// The Python module of the compiled kernels: every kernel file registers its functions through
// common.h's Register (run when the library is loaded, before this module's init), and this
// file is the one place that turns them into the module.
#include "common.h"

namespace gatedrnn {

std::vector<Registration>& registrations() {
  static std::vector<Registration> all;  // built on first use: no order between files matters
  return all;
}

}  // namespace gatedrnn

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  for (auto r : gatedrnn::registrations()) r(m);
  // common.h's parallel grain (elements): the new value set, the old one returned
  m.def("set_parallel_grain", [](int64_t elems) {
    TORCH_CHECK(elems >= 1, "the parallel grain must be at least 1 element, got ", elems);
    const int64_t old = gatedrnn::parallel_grain();
    gatedrnn::parallel_grain() = elems;
    return old;
  });
}

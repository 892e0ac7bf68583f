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
}

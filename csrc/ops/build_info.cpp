// What this build of the library contains.
#include "cpr/ops.h"

namespace cpr {

bool cuda_compiled() noexcept {
#ifdef CPR_WITH_CUDA
  return true;
#else
  return false;
#endif
}

}  // namespace cpr

// Connectivity enforcement for superpixel label maps (docs/LAYERS.md#connectivity-enforcement).
//
// A port of the loop in the original SSN release (adapted there from an old
// scikit-image _slic.pyx), restricted to 2-D: scan pixels in raster order; an
// unlabelled pixel seeds a 4-connected BFS over pixels of its input label,
// visiting neighbours in the fixed order +x, -x, +y, -y and stopping once the
// piece holds max_size pixels. A piece smaller than min_size takes the label
// of the last already-labelled neighbouring piece met during its BFS (0 if
// none); otherwise it gets the next new label. Output labels are consecutive
// from 0.
//
// Plain C on raw pointers so it can be loaded with ctypes; no allocation is
// visible to the caller.

#include <cstddef>
#include <cstdint>
#include <vector>

extern "C" {

// labels: height*width input labels, row-major (any int32 values).
// out: height*width output labels, row-major, written by this function.
// Requires 1 <= min_size <= max_size (the caller validates).
// Returns the number of output labels (0 for an empty image); the output
// labels are exactly 0 .. return value - 1.
int32_t ssn_enforce_connectivity(const int32_t* labels, int32_t* out,
                                 int32_t height, int32_t width,
                                 int32_t min_size, int32_t max_size) {
  const int64_t n = static_cast<int64_t>(height) * width;
  if (n <= 0) return 0;
  for (int64_t i = 0; i < n; ++i) out[i] = -1;
  // queue holds flat indices of the current piece, and column holds their
  // columns (so that no pixel needs a division); they never exceed max_size
  // (nor n) entries.
  const int64_t cap = max_size < n ? max_size : n;
  std::vector<int64_t> queue(static_cast<std::size_t>(cap));
  std::vector<int32_t> column(static_cast<std::size_t>(cap));
  int32_t next_label = 0;
  for (int64_t start = 0; start < n; ++start) {
    if (out[start] >= 0) continue;
    const int32_t lab = labels[start];
    int32_t adjacent = 0;
    out[start] = next_label;
    queue[0] = start;
    column[0] = static_cast<int32_t>(start % width);
    int64_t size = 1;
    int64_t head = 0;
    // Visits neighbour q (column x) of the pixel at the head; true once the
    // piece is full, which ends its BFS.
    const auto visit = [&](int64_t q, int32_t x) {
      if (labels[q] == lab && out[q] == -1) {
        out[q] = next_label;
        queue[size] = q;
        column[size] = x;
        return ++size >= max_size;
      }
      if (out[q] >= 0 && out[q] != next_label) adjacent = out[q];
      return false;
    };
    while (head < size && size < max_size) {
      const int64_t p = queue[head];
      const int32_t x = column[head];
      ++head;
      if (x + 1 < width && visit(p + 1, x + 1)) break;    // +x
      if (x > 0 && visit(p - 1, x - 1)) break;            // -x
      if (p + width < n && visit(p + width, x)) break;    // +y
      if (p >= width && visit(p - width, x)) break;       // -y
    }
    if (size < min_size) {
      for (int64_t i = 0; i < size; ++i) out[queue[i]] = adjacent;
    } else {
      ++next_label;
    }
  }
  // Every piece so far was smaller than min_size and had no labelled
  // neighbour: the whole image is one label, 0.
  return next_label > 0 ? next_label : 1;
}

}  // extern "C"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "caffe/ssn/slic_iterations_kernels.hpp"
#include "caffe/layers/slic_iterations_layer.hpp"
#include "caffe/ssn/layer_util.hpp"
#include "caffe/util/math_functions.hpp"

namespace caffe {

namespace {

// Consecutive rows with equal cell ids form one block per run of equal cell,
// so a block is a small rectangle of pixels (one cell of the grid is about
// H / K_h rows high): more rows amortise the per-block set-up and the loads
// and stores of the sums' accumulators, and groups stay small enough to
// share out among threads.
const int kGroupRows = 8;
// A thread packs a group (channel by channel: `rows` streams of each plane
// that the hardware prefetches) into a buffer of at most this many bytes,
// which stays in L2 while the group's blocks read it, cell by cell.
const size_t kGroupBytes = 384 << 10;
// Features of the whole batch up to this size are packed once, in the
// first step, and read by every later step and the assignment, as one stream
// per thread (20 channels at 481x321: 13 MB; a step 1.9 -> 1.43 ms on 2
// threads). Larger ones would double the features' memory, so there each
// thread packs one group at a time, again in every step. SSN_SLIC_PACK_ONCE=0
// in the environment (read on every call) always packs per step.
const size_t kPackOnceBytes = size_t(64) << 20;

bool PackOnce(size_t bytes) {
  const char* setting = std::getenv("SSN_SLIC_PACK_ONCE");
  return bytes <= kPackOnceBytes && (setting == nullptr || std::strcmp(setting, "0") != 0);
}

template <typename Dtype>
bool SameIds(const Dtype* a, const Dtype* b, int width) {
  for (int x = 0; x < width; ++x) {
    if (ssn::index_value(a[x]) != ssn::index_value(b[x])) return false;
  }
  return true;
}

}  // namespace

template <typename Dtype>
void SlicIterationsLayer<Dtype>::LayerSetUp(const vector<Blob<Dtype>*>& bottom,
                                            const vector<Blob<Dtype>*>& top) {
  ssn::read_grid(this->layer_param_, &grid_h_, &grid_w_);
  const SpixelFeatureTwoParameter& param = this->layer_param_.spixel_feature2_param();
  scale_ = param.has_scale_value() ? param.scale_value() : 1;
  invalid_distance_ = param.invalid_distance();
  const SlicIterationsParameter& slic = this->layer_param_.slic_iterations_param();
  CHECK(slic.has_num_steps())
      << "SlicIterations layer '" << this->layer_param_.name()
      << "': slic_iterations_param.num_steps is required";
  num_steps_ = slic.num_steps();
  CHECK_GE(num_steps_, 1) << "SlicIterations layer '" << this->layer_param_.name()
                          << "': num_steps must be at least 1";
}

template <typename Dtype>
void SlicIterationsLayer<Dtype>::Reshape(const vector<Blob<Dtype>*>& bottom,
                                         const vector<Blob<Dtype>*>& top) {
  ssn::check_association_bottoms(bottom, grid_h_, grid_w_,
                                 "SlicIterations '" + this->layer_param_.name() + "'");
  const int num = bottom[0]->num(), channels = bottom[0]->channels();
  const int height = bottom[0]->height(), width = bottom[0]->width();
  const int num_spixels = grid_h_ * grid_w_;
  top[0]->Reshape(num, 1, height, width);
  if (top.size() > 1) top[1]->Reshape(num, channels, 1, num_spixels);
  if (top.size() > 2) top[2]->Reshape(num, ssn::kNumNeighbours, height, width);
  vector<int> centres_shape(4);
  centres_shape[0] = 2;
  centres_shape[1] = num;
  centres_shape[2] = channels;
  centres_shape[3] = num_spixels;
  centres_.Reshape(centres_shape);
  // Blobs allocate on first use: the CPU path never touches these two.
  assoc_.Reshape(num, ssn::kNumNeighbours, height, width);
  weights_.Reshape(num, 1, 1, num_spixels);
}

template <typename Dtype>
size_t SlicIterationsLayer<Dtype>::FindBlocks(const vector<Blob<Dtype>*>& bottom) {
  const std::string where = "SlicIterations '" + this->layer_param_.name() + "' cell map";
  const int num = bottom[0]->num(), channels = bottom[0]->channels();
  const int height = bottom[0]->height(), width = bottom[0]->width();
  const int num_spixels = grid_h_ * grid_w_;
  const size_t row_bytes = sizeof(Dtype) * channels * width;
  const int max_rows = std::max<int>(1, std::min<size_t>(kGroupRows, kGroupBytes / row_bytes));
  const Dtype* cells = bottom[2]->cpu_data();
  blocks_.clear();
  groups_.clear();
  bounds_.clear();
  group_offsets_.assign(1, 0);
  size_t largest = 0;
  group_rows_ = 1;
  for (int n = 0; n < num; ++n) {
    for (int y = 0; y < height;) {
      const Dtype* row = cells + (static_cast<size_t>(n) * height + y) * width;
      int rows = 1;
      while (rows < max_rows && y + rows < height &&
             SameIds(row, row + rows * width, width)) {
        ++rows;
      }
      groups_.push_back(blocks_.size());
      group_rows_ = std::max(group_rows_, rows);
      int offset = 0;
      ssn::for_each_cell_run(row, width, num_spixels, where, n, y,
          [&](int begin, int end, int cell) {
        const CellBlock block = {n, y, rows, begin, end, cell, offset};
        blocks_.push_back(block);
        bounds_.push_back(begin);
        offset += ssn::slic_block_size<Dtype>(channels, rows * (end - begin));
      });
      bounds_.push_back(width);
      largest = std::max<size_t>(largest, offset);
      group_offsets_.push_back(group_offsets_.back() + offset);
      y += rows;
    }
  }
  groups_.push_back(blocks_.size());
  return largest;
}

// Each step reads the centre table of S^(t-1) and adds into per-thread
// accumulators (per superpixel: C sums and the weight, lane by lane; the sums
// of a step are scatters that blocks share), which are then added up, lanes
// and threads, into S^t and its table. All steps run in one parallel region,
// with barriers between the phases; each group of rows is copied out of the
// features and packed block by block (see kGroupBytes), once for all steps
// when the whole batch fits kPackOnceBytes.
template <typename Dtype>
void SlicIterationsLayer<Dtype>::Forward_cpu(const vector<Blob<Dtype>*>& bottom,
                                             const vector<Blob<Dtype>*>& top) {
  const bool pack_once = PackOnce(bottom[0]->count() * sizeof(Dtype));
  const size_t group_size = FindBlocks(bottom);
  const int num = bottom[0]->num(), channels = bottom[0]->channels();
  const int height = bottom[0]->height(), width = bottom[0]->width();
  const int spatial = height * width, num_spixels = grid_h_ * grid_w_;
  const int grid_h = grid_h_, grid_w = grid_w_, num_steps = num_steps_;
  const Dtype scale = scale_, invalid = scale_ * invalid_distance_;
  const int num_groups = static_cast<int>(groups_.size()) - 1;
  const int threads = num * height >= ssn::kMinParallelRows
      ? std::max(1, std::min(ssn::max_threads(), num_groups)) : 1;
  const int lanes = ssn::slic_lanes<Dtype>();
  const int num_cells = num * num_spixels;
  const size_t image_sums = static_cast<size_t>(num_spixels) * ssn::slic_sum_rows<Dtype>(channels)
      * lanes;
  const size_t image_table = static_cast<size_t>(num_spixels) * channels * lanes;
  const size_t sums_size = num * image_sums;
  const size_t block_scratch = ssn::slic_scratch_size<Dtype>();
  const size_t scratch_size = block_scratch + ssn::slic_staging_size<Dtype>(group_rows_, width);
  // Zeros: every reduction zeroes the accumulators it has read.
  partial_.assign(static_cast<size_t>(threads) * sums_size, Dtype(0));
  table_.resize(num * image_table);
  scratch_.resize(static_cast<size_t>(threads) * scratch_size);
  packed_.resize(pack_once ? group_offsets_.back() : threads * group_size);
  // Every blob pointer before the parallel region: a blob's first access
  // allocates it.
  const Dtype* pixels_all = bottom[0]->cpu_data();
  const Dtype* initial = bottom[1]->cpu_data();
  Dtype* centres = centres_.mutable_cpu_data();
  Dtype* labels_all = top[0]->mutable_cpu_data();
  Dtype* assoc_all = top.size() > 2 ? top[2]->mutable_cpu_data() : NULL;
  Dtype* partial_all = partial_.data();
  Dtype* table = table_.data();
  Dtype* scratch_all = scratch_.data();
  Dtype* packed_all = packed_.data();
  const CellBlock* blocks = blocks_.data();
  const int* groups = groups_.data();
  const int* bounds = bounds_.data();
  const size_t* group_offsets = group_offsets_.data();
#pragma omp parallel num_threads(threads)
  {
    const int thread = ssn::thread_id(), team = ssn::team_size();
    Dtype* partial = partial_all + static_cast<size_t>(thread) * sums_size;
    Dtype* scratch = scratch_all + static_cast<size_t>(thread) * scratch_size;
    // The group's packed blocks (see slic_iterations_kernels.hpp), packed
    // now unless they were packed once before (`first_use` false).
    const auto packed_group = [&](int group, bool first_use) {
      Dtype* packed = pack_once ? packed_all + group_offsets[group]
                                : packed_all + thread * group_size;
      if (first_use || !pack_once) {
        const CellBlock& block = blocks[groups[group]];
        ssn::slic_pack_group(
            pixels_all + static_cast<size_t>(block.n) * channels * spatial +
                static_cast<size_t>(block.y) * width,
            spatial, width, block.rows, channels, bounds + groups[group] + group,
            groups[group + 1] - groups[group], scratch + block_scratch, packed);
      }
      return packed;
    };
#pragma omp for schedule(static)
    for (int cell = 0; cell < num_cells; ++cell) {
      const int n = cell / num_spixels, j = cell % num_spixels;
      ssn::slic_fill_table(initial + static_cast<size_t>(n) * channels * num_spixels, channels,
                           num_spixels, j, table + n * image_table);
    }  // implicit barrier: the table of S^0 is complete
    int neighbours[ssn::kNumNeighbours];
    for (int step = 1; step < num_steps; ++step) {
#pragma omp for schedule(static)
      for (int group = 0; group < num_groups; ++group) {
        const Dtype* packed = packed_group(group, step == 1);
        for (int b = groups[group]; b < groups[group + 1]; ++b) {
          const CellBlock& block = blocks[b];
          for (int c = 0; c < ssn::kNumNeighbours; ++c) {
            neighbours[c] = ssn::neighbour_index(block.cell, c, grid_h, grid_w);
          }
          ssn::slic_update_block(packed + block.offset, block.rows * (block.end - block.begin),
                                 table + block.n * image_table, neighbours, channels, scale,
                                 invalid, scratch, partial + block.n * image_sums);
        }
      }  // implicit barrier: every thread's sums are complete
#pragma omp for schedule(static)
      for (int cell = 0; cell < num_cells; ++cell) {
        const int n = cell / num_spixels, j = cell % num_spixels;
        ssn::slic_reduce_sums(partial_all + n * image_sums, sums_size, team, channels,
                              num_spixels, j,
                              centres + static_cast<size_t>(n) * channels * num_spixels,
                              table + n * image_table);
      }  // implicit barrier: S^t and its table are complete before the next step
    }
    Dtype channel_labels[ssn::kNumNeighbours];
#pragma omp for schedule(static)
    for (int group = 0; group < num_groups; ++group) {
      const Dtype* packed = packed_group(group, num_steps == 1);
      for (int b = groups[group]; b < groups[group + 1]; ++b) {
        const CellBlock& block = blocks[b];
        for (int c = 0; c < ssn::kNumNeighbours; ++c) {
          neighbours[c] = ssn::neighbour_index(block.cell, c, grid_h, grid_w);
          channel_labels[c] = ssn::neighbour_index_clamped(block.cell, c, grid_h, grid_w);
        }
        const size_t first = static_cast<size_t>(block.y) * width + block.begin;
        ssn::slic_assign_block(
            packed + block.offset, block.rows, block.end - block.begin, width,
            table + block.n * image_table, neighbours, channel_labels, channels, scale,
            invalid, scratch, labels_all + static_cast<size_t>(block.n) * spatial + first,
            assoc_all == NULL ? NULL
                : assoc_all + static_cast<size_t>(block.n) * ssn::kNumNeighbours * spatial
                    + first,
            spatial);
      }
    }
  }
  if (top.size() > 1) {
    caffe_copy(num * channels * num_spixels, num_steps == 1 ? initial : centres,
               top[1]->mutable_cpu_data());
  }
}

template <typename Dtype>
void SlicIterationsLayer<Dtype>::RefuseBackward(const vector<bool>& propagate_down) const {
  for (int i = 0; i < propagate_down.size(); ++i) {
    if (!propagate_down[i]) continue;
    LOG(FATAL) << "SlicIterations layer '" << this->layer_param_.name()
               << "' has no backward (bottom " << i << " asked for a gradient): it is "
               << "for inference; train with the decomposed Passoc, Softmax and "
               << "SpixelFeature2 layers (ssn.nets.generators.slic_iterations)";
  }
}

template <typename Dtype>
void SlicIterationsLayer<Dtype>::Backward_cpu(const vector<Blob<Dtype>*>& top,
                                              const vector<bool>& propagate_down,
                                              const vector<Blob<Dtype>*>& bottom) {
  RefuseBackward(propagate_down);
}

#ifdef CPU_ONLY
STUB_GPU(SlicIterationsLayer);
#endif

INSTANTIATE_CLASS(SlicIterationsLayer);
REGISTER_LAYER_CLASS(SlicIterations);

}  // namespace caffe

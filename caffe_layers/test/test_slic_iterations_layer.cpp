// C++ tests of the SlicIterations layer (docs/LAYERS.md#sliciterations).
#include <algorithm>
#include <cmath>
#include <vector>

#include "gtest/gtest.h"

#include "caffe/layers/argmax_layer.hpp"
#include "caffe/layers/passoc_layer.hpp"
#include "caffe/layers/rel_to_abs_index_layer.hpp"
#include "caffe/layers/slic_iterations_layer.hpp"
#include "caffe/layers/softmax_layer.hpp"
#include "caffe/layers/spixel_feature2_layer.hpp"
#include "caffe/ssn/math.hpp"
#include "caffe/test/test_ssn_util.hpp"

namespace caffe {

template <typename TypeParam>
class SlicIterationsLayerTest : public SsnLayerTest<TypeParam> {};

TYPED_TEST_CASE(SlicIterationsLayerTest, TestDtypesAndDevices);

// The deploy net's decomposed chain on features F, initial centres S^0 and
// cells: num_steps x (Passoc + Softmax), SpixelFeature2 between them, then
// ArgMax and RelToAbsIndex. Gives the labels, S^(T-1) and Q_T that
// SlicIterations' three tops must equal.
template <typename Dtype>
void RunDecomposedSlic(const LayerParameter& grid_param, int num_steps,
                       Blob<Dtype>* features, Blob<Dtype>* spixels,
                       Blob<Dtype>* cells, Blob<Dtype>* labels,
                       Blob<Dtype>* centres, Blob<Dtype>* assoc) {
  centres->CopyFrom(*spixels, false, true);
  Blob<Dtype> dist, next, relative;
  for (int step = 1; step <= num_steps; ++step) {
    vector<Blob<Dtype>*> bottom, top(1, &dist);
    bottom.push_back(features);
    bottom.push_back(centres);
    bottom.push_back(cells);
    PassocLayer<Dtype> passoc(grid_param);
    passoc.SetUp(bottom, top);
    passoc.Forward(bottom, top);
    vector<Blob<Dtype>*> logits(1, &dist), probabilities(1, assoc);
    SoftmaxLayer<Dtype> softmax((LayerParameter()));
    softmax.SetUp(logits, probabilities);
    softmax.Forward(logits, probabilities);
    if (step == num_steps) break;
    bottom[1] = assoc;
    vector<Blob<Dtype>*> out(1, &next);
    SpixelFeature2Layer<Dtype> update(grid_param);
    update.SetUp(bottom, out);
    update.Forward(bottom, out);
    centres->CopyFrom(next, false, true);
  }
  LayerParameter argmax_param;
  argmax_param.mutable_argmax_param()->set_axis(1);
  ArgMaxLayer<Dtype> argmax(argmax_param);
  vector<Blob<Dtype>*> probabilities(1, assoc), chosen(1, &relative);
  argmax.SetUp(probabilities, chosen);
  argmax.Forward(probabilities, chosen);
  LayerParameter rel_param;
  rel_param.mutable_rel_to_abs_index_param()->set_num_spixels_h(
      grid_param.spixel_feature2_param().num_spixels_h());
  rel_param.mutable_rel_to_abs_index_param()->set_num_spixels_w(
      grid_param.spixel_feature2_param().num_spixels_w());
  RelToAbsIndexLayer<Dtype> rel_to_abs(rel_param);
  vector<Blob<Dtype>*> bottom(1, &relative), top(1, labels);
  bottom.push_back(cells);
  rel_to_abs.SetUp(bottom, top);
  rel_to_abs.Forward(bottom, top);
}

// Runs SlicIterations with all three tops and the decomposed chain on the same
// inputs, and expects equal results up to float rounding: labels may differ
// only where the decomposed association has a tie (its two largest values
// within the tolerance). Returns the number of distinct labels.
template <typename Dtype>
int ExpectSlicMatchesDecomposed(LayerParameter param, int num_steps,
                                Blob<Dtype>* features, Blob<Dtype>* spixels,
                                Blob<Dtype>* cells) {
  const double tolerance = sizeof(Dtype) == sizeof(float) ? 1e-4 : 1e-10;
  param.mutable_slic_iterations_param()->set_num_steps(num_steps);
  Blob<Dtype> labels, centres, assoc, fused_labels, fused_centres, fused_assoc;
  RunDecomposedSlic(param, num_steps, features, spixels, cells, &labels, &centres,
                    &assoc);
  vector<Blob<Dtype>*> bottom, top;
  bottom.push_back(features);
  bottom.push_back(spixels);
  bottom.push_back(cells);
  top.push_back(&fused_labels);
  top.push_back(&fused_centres);
  top.push_back(&fused_assoc);
  SlicIterationsLayer<Dtype> layer(param);
  layer.SetUp(bottom, top);
  // Sentinels: every output value must be written.
  caffe_set(fused_labels.count(), Dtype(-7), fused_labels.mutable_cpu_data());
  caffe_set(fused_assoc.count(), Dtype(-7), fused_assoc.mutable_cpu_data());
  layer.Forward(bottom, top);
  EXPECT_TRUE(fused_labels.shape() == labels.shape());
  EXPECT_TRUE(fused_centres.shape() == centres.shape());
  EXPECT_TRUE(fused_assoc.shape() == assoc.shape());
  for (int i = 0; i < centres.count(); ++i) {
    const double expected = centres.cpu_data()[i];
    EXPECT_NEAR(fused_centres.cpu_data()[i], expected,
                tolerance * std::max(1.0, std::fabs(expected)))
        << "S^(T-1) entry " << i << ", num_steps " << num_steps;
  }
  for (int i = 0; i < assoc.count(); ++i) {
    EXPECT_NEAR(fused_assoc.cpu_data()[i], assoc.cpu_data()[i], tolerance)
        << "Q_T entry " << i << ", num_steps " << num_steps;
  }
  const int spatial = labels.count(2);
  std::vector<int> seen;
  for (int i = 0; i < labels.count(); ++i) {
    seen.push_back(static_cast<int>(fused_labels.cpu_data()[i]));
    if (fused_labels.cpu_data()[i] == labels.cpu_data()[i]) continue;
    std::vector<double> q;
    for (int c = 0; c < ssn::kNumNeighbours; ++c) {
      q.push_back(assoc.cpu_data()[(i / spatial * ssn::kNumNeighbours + c) * spatial +
                                   i % spatial]);
    }
    std::sort(q.rbegin(), q.rend());
    EXPECT_LT(q[0] - q[1], tolerance)
        << "label of pixel " << i << ": " << fused_labels.cpu_data()[i] << ", not "
        << labels.cpu_data()[i] << " (no tie), num_steps " << num_steps;
  }
  std::sort(seen.begin(), seen.end());
  return std::unique(seen.begin(), seen.end()) - seen.begin();
}

TYPED_TEST(SlicIterationsLayerTest, MatchDecomposedForEveryStepCount) {
  typedef typename TypeParam::Dtype Dtype;
  FillGaussian(this->features_, Dtype(2));
  LayerParameter param = this->GridParam(2, 3);
  param.mutable_spixel_feature2_param()->set_scale_value(-1);
  for (int num_steps = 1; num_steps <= 6; ++num_steps) {
    EXPECT_GE(ExpectSlicMatchesDecomposed(param, num_steps, this->features_,
                                          this->spixels_, this->cells_), 3);
  }
}

// One cell, one row and one column of cells: every neighbour of some channel
// lies outside the grid. A small invalid distance lets those channels take
// association (and the argmax, whose label is then clamped), which the
// decomposed layers keep out of the sums.
TYPED_TEST(SlicIterationsLayerTest, MatchDecomposedOnEdgeGrids) {
  typedef typename TypeParam::Dtype Dtype;
  const int grids[4][2] = {{1, 1}, {1, 3}, {3, 1}, {7, 9}};
  for (int g = 0; g < 4; ++g) {
    const int grid_h = grids[g][0], grid_w = grids[g][1];
    for (int small_invalid = 0; small_invalid < 2; ++small_invalid) {
      Blob<Dtype> spixels(2, 3, 1, grid_h * grid_w);
      FillGaussian(&spixels);
      FillGridCells(this->cells_, grid_h, grid_w);
      LayerParameter param = this->GridParam(grid_h, grid_w);
      param.mutable_spixel_feature2_param()->set_scale_value(-0.5);
      if (small_invalid) param.mutable_spixel_feature2_param()->set_invalid_distance(2);
      for (int num_steps = 1; num_steps <= 3; ++num_steps) {
        ExpectSlicMatchesDecomposed(param, num_steps, this->features_, &spixels,
                                    this->cells_);
      }
    }
  }
}

// A larger image: more than 64 rows, so the rows run on all threads, and rows
// with several blocks of equal cell.
TYPED_TEST(SlicIterationsLayerTest, MatchDecomposedOnLargerImages) {
  typedef typename TypeParam::Dtype Dtype;
  Blob<Dtype> features(2, 6, 97, 131), spixels(2, 6, 1, 63), cells(2, 1, 97, 131);
  FillGaussian(&features, Dtype(3));
  FillGaussian(&spixels, Dtype(3));
  FillGridCells(&cells, 7, 9);
  LayerParameter param = this->GridParam(7, 9);
  param.mutable_spixel_feature2_param()->set_scale_value(-1);
  EXPECT_GT(ExpectSlicMatchesDecomposed(param, 5, &features, &spixels, &cells), 40);
}

TYPED_TEST(SlicIterationsLayerTest, OptionalTopsAndReshape) {
  typedef typename TypeParam::Dtype Dtype;
  LayerParameter param = this->GridParam(2, 3);
  param.mutable_spixel_feature2_param()->set_scale_value(-1);
  param.mutable_slic_iterations_param()->set_num_steps(3);
  vector<Blob<Dtype>*> bottom;
  bottom.push_back(this->features_);
  bottom.push_back(this->spixels_);
  bottom.push_back(this->cells_);
  SlicIterationsLayer<Dtype> layer(param);
  layer.SetUp(bottom, this->top_vec_);
  layer.Forward(bottom, this->top_vec_);
  EXPECT_EQ(this->top_->shape_string(), "2 1 7 9 (126)");
  // A new image size: the tops follow the bottoms.
  Blob<Dtype> features(1, 3, 12, 5), cells(1, 1, 12, 5), spixels(1, 3, 1, 6);
  FillGaussian(&features);
  FillGaussian(&spixels);
  FillGridCells(&cells, 2, 3);
  bottom[0] = &features;
  bottom[1] = &spixels;
  bottom[2] = &cells;
  layer.Reshape(bottom, this->top_vec_);
  layer.Forward(bottom, this->top_vec_);
  EXPECT_EQ(this->top_->shape_string(), "1 1 12 5 (60)");
  for (int i = 0; i < 60; ++i) {
    const int label = this->top_->cpu_data()[i];
    EXPECT_TRUE(label >= 0 && label < 6) << label;
  }
}

// No backward: asking for a gradient is fatal, with a message that says why.
TYPED_TEST(SlicIterationsLayerTest, RefuseBackward) {
  typedef typename TypeParam::Dtype Dtype;
  ::testing::FLAGS_gtest_death_test_style = "threadsafe";
  LayerParameter param = this->GridParam(2, 3);
  param.mutable_slic_iterations_param()->set_num_steps(2);
  vector<Blob<Dtype>*> bottom;
  bottom.push_back(this->features_);
  bottom.push_back(this->spixels_);
  bottom.push_back(this->cells_);
  SlicIterationsLayer<Dtype> layer(param);
  layer.SetUp(bottom, this->top_vec_);
  layer.Forward(bottom, this->top_vec_);
  EXPECT_FALSE(layer.AllowForceBackward(0));
  layer.Backward(this->top_vec_, vector<bool>(3, false), bottom);  // nothing asked
  vector<bool> propagate_down(3, false);
  propagate_down[0] = true;
  EXPECT_DEATH(layer.Backward(this->top_vec_, propagate_down, bottom),
               "has no backward");
}

}  // namespace caffe

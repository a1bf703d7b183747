// C++ tests of the SSN layers: the spec's test vectors, Caffe's finite
// difference GradientChecker on every differentiable bottom (odd sizes,
// batch 2), a check that the checked gradients are not all zero, and the fused
// SlicIterations against the decomposed layers it replaces.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "gtest/gtest.h"

#include "caffe/blob.hpp"
#include "caffe/common.hpp"
#include "caffe/filler.hpp"
#include "caffe/layer_factory.hpp"
#include "caffe/layers/argmax_layer.hpp"
#include "caffe/layers/concat_convolution_layer.hpp"
#include "caffe/layers/concat_layer.hpp"
#include "caffe/layers/conv_layer.hpp"
#include "caffe/layers/interp_layer.hpp"
#include "caffe/layers/loss_without_softmax_layer.hpp"
#include "caffe/layers/passoc_layer.hpp"
#include "caffe/layers/pixel_feature_layer.hpp"
#include "caffe/layers/rel_to_abs_index_layer.hpp"
#include "caffe/layers/slic_iterations_layer.hpp"
#include "caffe/layers/smear_layer.hpp"
#include "caffe/layers/softmax_layer.hpp"
#include "caffe/layers/spixel_feature2_layer.hpp"
#include "caffe/layers/spixel_feature_layer.hpp"
#include "caffe/layers/spixel_to_pixel_layer.hpp"
#include "caffe/ssn/math.hpp"
#include "caffe/ssn/vector_exp.hpp"
#include "caffe/test/test_caffe_main.hpp"
#include "caffe/test/test_gradient_check_util.hpp"

namespace caffe {

// Fills an N x 1 x H x W blob with the floor-rule grid: cell of (y, x) is
// floor(y * grid_h / H) * grid_w + floor(x * grid_w / W).
template <typename Dtype>
void FillGridCells(Blob<Dtype>* cells, int grid_h, int grid_w) {
  const int height = cells->height(), width = cells->width();
  Dtype* data = cells->mutable_cpu_data();
  for (int n = 0; n < cells->num(); ++n) {
    for (int y = 0; y < height; ++y) {
      for (int x = 0; x < width; ++x) {
        data[(n * height + y) * width + x] =
            (y * grid_h / height) * grid_w + x * grid_w / width;
      }
    }
  }
}

template <typename Dtype>
void FillGaussian(Blob<Dtype>* blob, Dtype std = 1) {
  FillerParameter param;
  param.set_std(std);
  GaussianFiller<Dtype>(param).Fill(blob);
}

template <typename Dtype>
void FillUniform(Blob<Dtype>* blob, Dtype min, Dtype max) {
  FillerParameter param;
  param.set_min(min);
  param.set_max(max);
  UniformFiller<Dtype>(param).Fill(blob);
}

// The 1 x 2 x 4 x 6 features of the spec's test vectors (section 15).
template <typename Dtype>
void FillSpecFeatures(Blob<Dtype>* features) {
  features->Reshape(1, 2, 4, 6);
  Dtype* data = features->mutable_cpu_data();
  for (int p = 0; p < 24; ++p) {
    data[p] = p;
    data[24 + p] = 2 * (p % 5);
  }
}

// Runs forward and backward with a top diff of ones and expects some nonzero
// entry in bottom[index]'s diff (GradientChecker accepts all-zero gradients).
template <typename Dtype>
void ExpectNonzeroGradient(Layer<Dtype>* layer, const vector<Blob<Dtype>*>& bottom,
                           const vector<Blob<Dtype>*>& top, int index) {
  layer->Forward(bottom, top);
  for (int t = 0; t < top.size(); ++t) {
    caffe_set(top[t]->count(), Dtype(1), top[t]->mutable_cpu_diff());
  }
  vector<bool> propagate_down(bottom.size(), false);
  propagate_down[index] = true;
  layer->Backward(top, propagate_down, bottom);
  EXPECT_GT(caffe_cpu_asum(bottom[index]->count(), bottom[index]->cpu_diff()), 0)
      << "bottom " << index << " received an all-zero gradient";
}

template <typename TypeParam>
class SsnLayerTest : public MultiDeviceTest<TypeParam> {
  typedef typename TypeParam::Dtype Dtype;

 protected:
  SsnLayerTest()
      : features_(new Blob<Dtype>(2, 3, 7, 9)),
        spixels_(new Blob<Dtype>(2, 3, 1, 6)),
        assoc_(new Blob<Dtype>(2, 9, 7, 9)),
        cells_(new Blob<Dtype>(2, 1, 7, 9)),
        top_(new Blob<Dtype>()),
        top2_(new Blob<Dtype>()) {
    Caffe::set_random_seed(1701);
    FillGaussian(features_);
    FillGaussian(spixels_);
    FillUniform(assoc_, Dtype(0.1), Dtype(1));
    FillGridCells(cells_, 2, 3);
    top_vec_.push_back(top_);
  }
  virtual ~SsnLayerTest() {
    delete features_;
    delete spixels_;
    delete assoc_;
    delete cells_;
    delete top_;
    delete top2_;
  }

  static LayerParameter GridParam(int grid_h, int grid_w) {
    LayerParameter param;
    param.mutable_spixel_feature2_param()->set_num_spixels_h(grid_h);
    param.mutable_spixel_feature2_param()->set_num_spixels_w(grid_w);
    return param;
  }

  Blob<Dtype>* features_;  // 2 x 3 x 7 x 9 pixel features
  Blob<Dtype>* spixels_;   // 2 x 3 x 1 x 6 superpixel features (2 x 3 grid)
  Blob<Dtype>* assoc_;     // 2 x 9 x 7 x 9 associations
  Blob<Dtype>* cells_;     // 2 x 1 x 7 x 9 initial cells of a 2 x 3 grid
  Blob<Dtype>* top_;
  Blob<Dtype>* top2_;
  vector<Blob<Dtype>*> top_vec_;
};

TYPED_TEST_CASE(SsnLayerTest, TestDtypesAndDevices);

// ---- PixelFeature ----

TYPED_TEST(SsnLayerTest, PixelFeaturePositionAndRgb) {
  typedef typename TypeParam::Dtype Dtype;
  LayerParameter param;
  PixelFeatureParameter* pf = param.mutable_pixel_feature_param();
  pf->set_type(PixelFeatureParameter_Feature_POSITION_AND_RGB);
  pf->set_pos_scale(0.5);
  pf->set_color_scale(0.26);
  pf->set_offset_h(1);
  vector<Blob<Dtype>*> bottom(1, this->features_);
  PixelFeatureLayer<Dtype> layer(param);
  layer.SetUp(bottom, this->top_vec_);
  layer.Forward(bottom, this->top_vec_);
  ASSERT_EQ(this->top_->channels(), 5);
  for (int n = 0; n < 2; ++n) {
    for (int y = 0; y < 7; ++y) {
      for (int x = 0; x < 9; ++x) {
        EXPECT_FLOAT_EQ(this->top_->data_at(n, 0, y, x), 0.5 * y + 1);
        EXPECT_FLOAT_EQ(this->top_->data_at(n, 1, y, x), 0.5 * x);
        for (int c = 0; c < 3; ++c) {
          EXPECT_NEAR(this->top_->data_at(n, 2 + c, y, x),
                      0.26 * this->features_->data_at(n, c, y, x), 1e-6);
        }
      }
    }
  }
}

TYPED_TEST(SsnLayerTest, PixelFeatureGradient) {
  typedef typename TypeParam::Dtype Dtype;
  LayerParameter param;
  param.mutable_pixel_feature_param()->set_type(
      PixelFeatureParameter_Feature_RGB_AND_POSITION);
  param.mutable_pixel_feature_param()->set_color_scale(0.7);
  vector<Blob<Dtype>*> bottom(1, this->features_);
  PixelFeatureLayer<Dtype> layer(param);
  GradientChecker<Dtype> checker(1e-2, 1e-3);
  checker.CheckGradientExhaustive(&layer, bottom, this->top_vec_, 0);
  ExpectNonzeroGradient(&layer, bottom, this->top_vec_, 0);
}

// ---- SpixelFeature ----

TYPED_TEST(SsnLayerTest, SpixelFeatureSpecVector) {
  typedef typename TypeParam::Dtype Dtype;
  Blob<Dtype> features, cells(1, 1, 4, 6);
  FillSpecFeatures(&features);
  FillGridCells(&cells, 2, 3);
  LayerParameter param;
  SpixelFeatureParameter* sf = param.mutable_spixel_feature_param();
  sf->set_type(SpixelFeatureParameter_Feature_AVGRGB);
  sf->set_max_spixels(6);
  vector<Blob<Dtype>*> bottom;
  bottom.push_back(&features);
  bottom.push_back(&cells);
  SpixelFeatureLayer<Dtype> layer(param);
  layer.SetUp(bottom, this->top_vec_);
  layer.Forward(bottom, this->top_vec_);
  const double expected[2][6] = {{3.5, 5.5, 7.5, 15.5, 17.5, 19.5},
                                 {2, 6, 2.5, 6, 2.5, 4}};
  for (int k = 0; k < 2; ++k) {
    for (int j = 0; j < 6; ++j) {
      EXPECT_NEAR(this->top_->data_at(0, k, 0, j), expected[k][j], 1e-5);
    }
  }
}

TYPED_TEST(SsnLayerTest, SpixelFeatureIgnoresAndMarksEmpty) {
  typedef typename TypeParam::Dtype Dtype;
  Blob<Dtype> features(1, 1, 1, 4), ids(1, 1, 1, 4);
  const Dtype values[] = {1, 2, 3, 4}, labels[] = {0, -10, 0, 2};
  caffe_copy(4, values, features.mutable_cpu_data());
  caffe_copy(4, labels, ids.mutable_cpu_data());
  LayerParameter param;
  SpixelFeatureParameter* sf = param.mutable_spixel_feature_param();
  sf->set_type(SpixelFeatureParameter_Feature_AVGRGB);
  sf->set_max_spixels(3);
  sf->set_ignore_idx_value(-10);
  sf->set_ignore_feature_value(255);
  vector<Blob<Dtype>*> bottom;
  bottom.push_back(&features);
  bottom.push_back(&ids);
  this->top_vec_.push_back(this->top2_);
  SpixelFeatureLayer<Dtype> layer(param);
  layer.SetUp(bottom, this->top_vec_);
  layer.Forward(bottom, this->top_vec_);
  EXPECT_NEAR(this->top_->cpu_data()[0], 2, 1e-6);
  EXPECT_EQ(this->top_->cpu_data()[1], 255);  // empty superpixel
  EXPECT_NEAR(this->top_->cpu_data()[2], 4, 1e-6);
  EXPECT_EQ(this->top2_->cpu_data()[1], 255);  // ignored pixel
  EXPECT_NEAR(this->top2_->cpu_data()[3], 4, 1e-6);
}

TYPED_TEST(SsnLayerTest, SpixelFeatureGradientBothTops) {
  typedef typename TypeParam::Dtype Dtype;
  LayerParameter param;
  SpixelFeatureParameter* sf = param.mutable_spixel_feature_param();
  sf->set_type(SpixelFeatureParameter_Feature_AVGRGBXYRGBXY);
  sf->set_max_spixels(7);  // one more than the grid: an empty superpixel
  sf->set_rgb_scale(0.5);
  sf->set_rgbxy_rgb_scale(2);
  vector<Blob<Dtype>*> bottom;
  bottom.push_back(this->features_);
  bottom.push_back(this->cells_);
  this->top_vec_.push_back(this->top2_);
  SpixelFeatureLayer<Dtype> layer(param);
  GradientChecker<Dtype> checker(1e-2, 1e-3);
  checker.CheckGradientExhaustive(&layer, bottom, this->top_vec_, 0);
  ExpectNonzeroGradient(&layer, bottom, this->top_vec_, 0);
}

// ---- Passoc ----

TYPED_TEST(SsnLayerTest, PassocSpecVector) {
  typedef typename TypeParam::Dtype Dtype;
  Blob<Dtype> features, cells(1, 1, 4, 6), spixels(1, 2, 1, 6);
  FillSpecFeatures(&features);
  FillGridCells(&cells, 2, 3);
  const Dtype s0[] = {3.5, 5.5, 7.5, 15.5, 17.5, 19.5, 2, 6, 2.5, 6, 2.5, 4};
  caffe_copy(12, s0, spixels.mutable_cpu_data());
  LayerParameter param = this->GridParam(2, 3);
  param.mutable_spixel_feature2_param()->set_scale_value(-1);
  param.mutable_spixel_feature2_param()->set_invalid_distance(10000);
  vector<Blob<Dtype>*> bottom;
  bottom.push_back(&features);
  bottom.push_back(&spixels);
  bottom.push_back(&cells);
  PassocLayer<Dtype> layer(param);
  layer.SetUp(bottom, this->top_vec_);
  layer.Forward(bottom, this->top_vec_);
  const double at_1_2[9] = {-10000, -10000, -10000, -36.25, -6.25, -12.5,
                            -56.25, -102.5, -136.25};
  const double at_0_0[9] = {-10000, -10000, -10000, -10000, -16.25, -66.25,
                            -10000, -276.25, -312.5};
  for (int c = 0; c < 9; ++c) {
    EXPECT_NEAR(this->top_->data_at(0, c, 1, 2), at_1_2[c], 1e-3);
    EXPECT_NEAR(this->top_->data_at(0, c, 0, 0), at_0_0[c], 1e-3);
  }
}

TYPED_TEST(SsnLayerTest, PassocDefaultInvalidNeverWins) {
  typedef typename TypeParam::Dtype Dtype;
  LayerParameter param = this->GridParam(2, 3);
  param.mutable_spixel_feature2_param()->set_scale_value(-1);
  vector<Blob<Dtype>*> bottom;
  bottom.push_back(this->features_);
  bottom.push_back(this->spixels_);
  bottom.push_back(this->cells_);
  PassocLayer<Dtype> layer(param);
  layer.SetUp(bottom, this->top_vec_);
  layer.Forward(bottom, this->top_vec_);
  // Pixel (0, 0) lies in the top-left cell: channel 0 (up-left) is invalid.
  EXPECT_LE(this->top_->data_at(0, 0, 0, 0), -1e29);
  EXPECT_GT(this->top_->data_at(0, 4, 0, 0), -1e3);
}

TYPED_TEST(SsnLayerTest, PassocGradient) {
  typedef typename TypeParam::Dtype Dtype;
  LayerParameter param = this->GridParam(2, 3);
  param.mutable_spixel_feature2_param()->set_scale_value(-0.5);
  param.mutable_spixel_feature2_param()->set_invalid_distance(3);
  vector<Blob<Dtype>*> bottom;
  bottom.push_back(this->features_);
  bottom.push_back(this->spixels_);
  bottom.push_back(this->cells_);
  PassocLayer<Dtype> layer(param);
  GradientChecker<Dtype> checker(1e-2, 2e-3);
  checker.CheckGradientExhaustive(&layer, bottom, this->top_vec_, 0);
  checker.CheckGradientExhaustive(&layer, bottom, this->top_vec_, 1);
  ExpectNonzeroGradient(&layer, bottom, this->top_vec_, 0);
  ExpectNonzeroGradient(&layer, bottom, this->top_vec_, 1);
}

// ---- SpixelFeature2 ----

TYPED_TEST(SsnLayerTest, SpixelFeature2SpecVector) {
  typedef typename TypeParam::Dtype Dtype;
  Blob<Dtype> features, cells(1, 1, 4, 6), assoc(1, 9, 4, 6);
  FillSpecFeatures(&features);
  FillGridCells(&cells, 2, 3);
  for (int c = 0; c < 9; ++c) {
    caffe_set(24, Dtype((c + 1) / 45.0), assoc.mutable_cpu_data() + c * 24);
  }
  vector<Blob<Dtype>*> bottom;
  bottom.push_back(&features);
  bottom.push_back(&assoc);
  bottom.push_back(&cells);
  SpixelFeature2Layer<Dtype> layer(this->GridParam(2, 3));
  layer.SetUp(bottom, this->top_vec_);
  layer.Forward(bottom, this->top_vec_);
  const double expected[2][6] = {
      {7.333333, 8.547619, 10.125, 8.916667, 9.910256, 11.142857},
      {4.041667, 3.761905, 4.0, 4.083333, 3.794872, 3.892857}};
  for (int k = 0; k < 2; ++k) {
    for (int j = 0; j < 6; ++j) {
      EXPECT_NEAR(this->top_->data_at(0, k, 0, j), expected[k][j], 1e-5);
    }
  }
}

TYPED_TEST(SsnLayerTest, SpixelFeature2Gradient) {
  typedef typename TypeParam::Dtype Dtype;
  vector<Blob<Dtype>*> bottom;
  bottom.push_back(this->features_);
  bottom.push_back(this->assoc_);
  bottom.push_back(this->cells_);
  SpixelFeature2Layer<Dtype> layer(this->GridParam(2, 3));
  GradientChecker<Dtype> checker(1e-3, 2e-3);
  checker.CheckGradientExhaustive(&layer, bottom, this->top_vec_, 0);
  checker.CheckGradientExhaustive(&layer, bottom, this->top_vec_, 1);
  ExpectNonzeroGradient(&layer, bottom, this->top_vec_, 0);
  ExpectNonzeroGradient(&layer, bottom, this->top_vec_, 1);
}

// ---- RelToAbsIndex ----

TYPED_TEST(SsnLayerTest, RelToAbsIndexSpecVector) {
  typedef typename TypeParam::Dtype Dtype;
  Blob<Dtype> relative(1, 1, 4, 6), cells(1, 1, 4, 6);
  FillGridCells(&cells, 2, 3);
  const Dtype channels[] = {4, 4, 3, 4, 3, 4, 4, 5, 4, 4, 4, 4,
                            4, 4, 3, 4, 3, 3, 4, 4, 4, 5, 4, 4};
  caffe_copy(24, channels, relative.mutable_cpu_data());
  LayerParameter param;
  param.mutable_rel_to_abs_index_param()->set_num_spixels_h(2);
  param.mutable_rel_to_abs_index_param()->set_num_spixels_w(3);
  vector<Blob<Dtype>*> bottom;
  bottom.push_back(&relative);
  bottom.push_back(&cells);
  RelToAbsIndexLayer<Dtype> layer(param);
  layer.SetUp(bottom, this->top_vec_);
  layer.Forward(bottom, this->top_vec_);
  const int expected[] = {0, 0, 0, 1, 1, 2, 0, 1, 1, 1, 2, 2,
                          3, 3, 3, 4, 4, 4, 3, 3, 4, 5, 5, 5};
  for (int p = 0; p < 24; ++p) {
    EXPECT_EQ(this->top_->cpu_data()[p], expected[p]) << "pixel " << p;
  }
}

TYPED_TEST(SsnLayerTest, RelToAbsIndexClampsInvalidNeighbours) {
  typedef typename TypeParam::Dtype Dtype;
  Blob<Dtype> relative(1, 1, 1, 1), cells(1, 1, 1, 1);
  relative.mutable_cpu_data()[0] = 0;  // up-left of the top-left cell
  cells.mutable_cpu_data()[0] = 1;     // cell (0, 1) of a 2 x 3 grid
  LayerParameter param;
  param.mutable_rel_to_abs_index_param()->set_num_spixels_h(2);
  param.mutable_rel_to_abs_index_param()->set_num_spixels_w(3);
  vector<Blob<Dtype>*> bottom;
  bottom.push_back(&relative);
  bottom.push_back(&cells);
  RelToAbsIndexLayer<Dtype> layer(param);
  layer.SetUp(bottom, this->top_vec_);
  layer.Forward(bottom, this->top_vec_);
  EXPECT_EQ(this->top_->cpu_data()[0], 0);  // row clamped to 0, column 0
}

// ---- Smear ----

TYPED_TEST(SsnLayerTest, SmearGathersAndIgnores) {
  typedef typename TypeParam::Dtype Dtype;
  Blob<Dtype> ids(1, 1, 1, 3);
  const Dtype labels[] = {2, -1, 0};
  caffe_copy(3, labels, ids.mutable_cpu_data());
  Blob<Dtype> values(1, 3, 1, 6);
  FillGaussian(&values);
  vector<Blob<Dtype>*> bottom;
  bottom.push_back(&values);
  bottom.push_back(&ids);
  SmearLayer<Dtype> layer((LayerParameter()));
  layer.SetUp(bottom, this->top_vec_);
  layer.Forward(bottom, this->top_vec_);
  for (int c = 0; c < 3; ++c) {
    EXPECT_EQ(this->top_->data_at(0, c, 0, 0), values.data_at(0, c, 0, 2));
    EXPECT_EQ(this->top_->data_at(0, c, 0, 1), -1000);
    EXPECT_EQ(this->top_->data_at(0, c, 0, 2), values.data_at(0, c, 0, 0));
  }
}

TYPED_TEST(SsnLayerTest, SmearGradient) {
  typedef typename TypeParam::Dtype Dtype;
  vector<Blob<Dtype>*> bottom;
  bottom.push_back(this->spixels_);
  bottom.push_back(this->cells_);
  SmearLayer<Dtype> layer((LayerParameter()));
  GradientChecker<Dtype> checker(1e-2, 1e-3);
  checker.CheckGradientExhaustive(&layer, bottom, this->top_vec_, 0);
  ExpectNonzeroGradient(&layer, bottom, this->top_vec_, 0);
}

// ---- SpixelToPixel ----

// Against direct sums over the 9 neighbours, odd sizes and batch 2 (2 x 3
// grid, so every border case occurs): border cells' outside neighbours add 0.
TYPED_TEST(SsnLayerTest, SpixelToPixelMatchesDirectSums) {
  typedef typename TypeParam::Dtype Dtype;
  vector<Blob<Dtype>*> bottom;
  bottom.push_back(this->spixels_);
  bottom.push_back(this->assoc_);
  bottom.push_back(this->cells_);
  SpixelToPixelLayer<Dtype> layer(this->GridParam(2, 3));
  layer.SetUp(bottom, this->top_vec_);
  layer.Forward(bottom, this->top_vec_);
  ASSERT_EQ(this->top_->shape(), this->features_->shape());
  for (int n = 0; n < 2; ++n) {
    for (int k = 0; k < 3; ++k) {
      for (int y = 0; y < 7; ++y) {
        for (int x = 0; x < 9; ++x) {
          const int cell = static_cast<int>(this->cells_->data_at(n, 0, y, x));
          double expected = 0;
          for (int i = 0; i < 9; ++i) {
            const int j = ssn::neighbour_index(cell, i, 2, 3);
            if (j < 0) continue;
            expected += this->assoc_->data_at(n, i, y, x) *
                        this->spixels_->data_at(n, k, 0, j);
          }
          EXPECT_NEAR(this->top_->data_at(n, k, y, x), expected, 1e-5);
        }
      }
    }
  }
}

TYPED_TEST(SsnLayerTest, SpixelToPixelGradient) {
  typedef typename TypeParam::Dtype Dtype;
  Blob<Dtype> spixels(2, 2, 1, 6), assoc(2, 9, 5, 7), cells(2, 1, 5, 7);
  FillGaussian(&spixels);
  FillUniform(&assoc, Dtype(0), Dtype(1));
  FillGridCells(&cells, 2, 3);
  vector<Blob<Dtype>*> bottom;
  bottom.push_back(&spixels);
  bottom.push_back(&assoc);
  bottom.push_back(&cells);
  SpixelToPixelLayer<Dtype> layer(this->GridParam(2, 3));
  GradientChecker<Dtype> checker(1e-2, 1e-3);
  checker.CheckGradientExhaustive(&layer, bottom, this->top_vec_, 0);
  checker.CheckGradientExhaustive(&layer, bottom, this->top_vec_, 1);
  ExpectNonzeroGradient(&layer, bottom, this->top_vec_, 0);
  ExpectNonzeroGradient(&layer, bottom, this->top_vec_, 1);
  EXPECT_FALSE(layer.AllowForceBackward(2));
}

// ---- Interp ----

TYPED_TEST(SsnLayerTest, InterpZoomTwoSpecVector) {
  typedef typename TypeParam::Dtype Dtype;
  Blob<Dtype> input(1, 1, 3, 3);
  for (int i = 0; i < 9; ++i) input.mutable_cpu_data()[i] = i;
  LayerParameter param;
  param.mutable_interp_param()->set_zoom_factor(2);
  vector<Blob<Dtype>*> bottom(1, &input);
  InterpLayer<Dtype> layer(param);
  layer.SetUp(bottom, this->top_vec_);
  layer.Forward(bottom, this->top_vec_);
  ASSERT_EQ(this->top_->height(), 5);
  ASSERT_EQ(this->top_->width(), 5);
  const double expected[5][5] = {{0, .5, 1, 1.5, 2}, {1.5, 2, 2.5, 3, 3.5},
                                 {3, 3.5, 4, 4.5, 5}, {4.5, 5, 5.5, 6, 6.5},
                                 {6, 6.5, 7, 7.5, 8}};
  for (int h = 0; h < 5; ++h) {
    for (int w = 0; w < 5; ++w) {
      EXPECT_NEAR(this->top_->data_at(0, 0, h, w), expected[h][w], 1e-6);
    }
  }
}

TYPED_TEST(SsnLayerTest, InterpGradientWithCropAndSize) {
  typedef typename TypeParam::Dtype Dtype;
  LayerParameter param;
  param.mutable_interp_param()->set_height(11);
  param.mutable_interp_param()->set_width(4);
  param.mutable_interp_param()->set_pad_beg(-1);
  vector<Blob<Dtype>*> bottom(1, this->features_);
  InterpLayer<Dtype> layer(param);
  GradientChecker<Dtype> checker(1e-2, 1e-3);
  checker.CheckGradientExhaustive(&layer, bottom, this->top_vec_, 0);
  ExpectNonzeroGradient(&layer, bottom, this->top_vec_, 0);
}

// With a reference bottom, Interp's output is the top-left corner of its
// output without one, bit for bit, and so is the gradient: that of the top
// diff padded with zeros. The reference has another batch size and channels.
TYPED_TEST(SsnLayerTest, InterpReferenceIsInterpThenCrop) {
  typedef typename TypeParam::Dtype Dtype;
  const int sizes[][2] = {{16, 25}, {19, 24}, {1, 1}, {19, 25}};
  for (int s = 0; s < 4; ++s) {
    LayerParameter param;
    param.mutable_interp_param()->set_zoom_factor(3);  // 7 x 9 -> 19 x 25
    Blob<Dtype> reference(1, 4, sizes[s][0], sizes[s][1]), full;
    vector<Blob<Dtype>*> bottom(1, this->features_), both(bottom);
    both.push_back(&reference);
    vector<Blob<Dtype>*> full_top(1, &full);
    InterpLayer<Dtype> whole(param), cropping(param);
    whole.SetUp(bottom, full_top);
    whole.Forward(bottom, full_top);
    cropping.SetUp(both, this->top_vec_);
    cropping.Forward(both, this->top_vec_);
    Blob<Dtype>* top = this->top_;
    ASSERT_EQ(top->num(), 2);
    ASSERT_EQ(top->channels(), 3);
    ASSERT_EQ(top->height(), sizes[s][0]);
    ASSERT_EQ(top->width(), sizes[s][1]);
    FillGaussian(top);
    caffe_copy(top->count(), top->cpu_data(), top->mutable_cpu_diff());
    cropping.Forward(both, this->top_vec_);
    caffe_set(full.count(), Dtype(0), full.mutable_cpu_diff());
    for (int n = 0; n < 2; ++n) {
      for (int c = 0; c < 3; ++c) {
        for (int h = 0; h < top->height(); ++h) {
          for (int w = 0; w < top->width(); ++w) {
            ASSERT_EQ(top->data_at(n, c, h, w), full.data_at(n, c, h, w));
            full.mutable_cpu_diff()[full.offset(n, c, h, w)] =
                top->diff_at(n, c, h, w);
          }
        }
      }
    }
    caffe_set(reference.count(), Dtype(7), reference.mutable_cpu_diff());
    cropping.Backward(this->top_vec_, vector<bool>(2, true), both);
    const vector<Dtype> cropped_diff(this->features_->cpu_diff(),
        this->features_->cpu_diff() + this->features_->count());
    whole.Backward(full_top, vector<bool>(1, true), bottom);
    for (int i = 0; i < this->features_->count(); ++i) {
      ASSERT_EQ(cropped_diff[i], this->features_->cpu_diff()[i]) << i;
    }
    // The reference's gradient is zero, written when asked for.
    EXPECT_EQ(caffe_cpu_asum(reference.count(), reference.cpu_diff()), 0);
    EXPECT_FALSE(cropping.AllowForceBackward(1));
  }
}

TYPED_TEST(SsnLayerTest, InterpReferenceGradient) {
  typedef typename TypeParam::Dtype Dtype;
  LayerParameter param;
  param.mutable_interp_param()->set_zoom_factor(2);  // 7 x 9 -> 13 x 17
  param.mutable_interp_param()->set_pad_beg(-1);     // 6 x 8 -> 11 x 15
  Blob<Dtype> reference(2, 1, 10, 14);
  vector<Blob<Dtype>*> bottom(1, this->features_);
  bottom.push_back(&reference);
  InterpLayer<Dtype> layer(param);
  GradientChecker<Dtype> checker(1e-2, 1e-3);
  checker.CheckGradientExhaustive(&layer, bottom, this->top_vec_, 0);
  ExpectNonzeroGradient(&layer, bottom, this->top_vec_, 0);
}

// ---- ConcatConvolution ----

// A 3x3 convolution to 4 outputs with random weights and bias. Caffe's
// engine for the parts on GPU too: cuDNN may round through TF32 (pycaffe's
// test_gpu.py runs the default engine with TF32 off).
LayerParameter ConcatConvolutionParam(int pad, int stride) {
  LayerParameter param;
  param.set_type("ConcatConvolution");
  ConvolutionParameter* conv = param.mutable_convolution_param();
  conv->set_num_output(4);
  conv->add_kernel_size(3);
  conv->add_pad(pad);
  conv->add_stride(stride);
  conv->mutable_weight_filler()->set_type("gaussian");
  conv->mutable_bias_filler()->set_type("gaussian");
  conv->set_engine(ConvolutionParameter_Engine_CAFFE);
  return param;
}

// Bottoms of 1, 3 and 2 channels: the same output and gradients as Concat
// and a Convolution with the same weights (up to float summation order).
TYPED_TEST(SsnLayerTest, ConcatConvolutionIsConvolutionOfConcat) {
  typedef typename TypeParam::Dtype Dtype;
  const double tolerance = sizeof(Dtype) == sizeof(float) ? 1e-5 : 1e-12;
  for (int geometry = 0; geometry < 2; ++geometry) {
    const int pad = geometry == 0 ? 1 : 0, stride = geometry == 0 ? 1 : 2;
    Blob<Dtype> first(2, 1, 7, 9), third(2, 2, 7, 9), joined, reference;
    FillGaussian(&first);
    FillGaussian(&third);
    vector<Blob<Dtype>*> bottom;
    bottom.push_back(&first);
    bottom.push_back(this->features_);
    bottom.push_back(&third);
    LayerParameter param = ConcatConvolutionParam(pad, stride);
    ConcatConvolutionLayer<Dtype> fused(param);
    fused.SetUp(bottom, this->top_vec_);
    ASSERT_EQ(fused.blobs().size(), 2);
    EXPECT_EQ(fused.blobs()[0]->shape_string(), "4 6 3 3 (216)");
    EXPECT_EQ(fused.blobs()[1]->shape_string(), "4 (4)");

    vector<Blob<Dtype>*> joined_vec(1, &joined), reference_vec(1, &reference);
    ConcatLayer<Dtype> concat((LayerParameter()));
    concat.SetUp(bottom, joined_vec);
    param.set_type("Convolution");
    ConvolutionLayer<Dtype> conv(param);
    conv.SetUp(joined_vec, reference_vec);
    for (int b = 0; b < 2; ++b) conv.blobs()[b]->CopyFrom(*fused.blobs()[b]);

    concat.Forward(bottom, joined_vec);
    conv.Forward(joined_vec, reference_vec);
    fused.Forward(bottom, this->top_vec_);
    Blob<Dtype>* top = this->top_;
    ASSERT_TRUE(top->shape() == reference.shape());
    for (int i = 0; i < top->count(); ++i) {
      EXPECT_NEAR(top->cpu_data()[i], reference.cpu_data()[i],
                  tolerance * std::max(Dtype(1), std::fabs(top->cpu_data()[i])));
    }
    FillGaussian(&reference);  // the top diff, through the diffs below
    caffe_copy(top->count(), reference.cpu_data(), top->mutable_cpu_diff());
    caffe_copy(top->count(), reference.cpu_data(), reference.mutable_cpu_diff());
    conv.Backward(reference_vec, vector<bool>(1, true), joined_vec);
    concat.Backward(joined_vec, vector<bool>(3, true), bottom);
    vector<vector<Dtype> > expected;
    for (int b = 0; b < 3; ++b) {
      expected.push_back(vector<Dtype>(bottom[b]->cpu_diff(),
                                       bottom[b]->cpu_diff() + bottom[b]->count()));
    }
    fused.Backward(this->top_vec_, vector<bool>(3, true), bottom);
    for (int b = 0; b < 3; ++b) {
      for (int i = 0; i < bottom[b]->count(); ++i) {
        EXPECT_NEAR(bottom[b]->cpu_diff()[i], expected[b][i],
                    tolerance * std::max(Dtype(1), std::fabs(expected[b][i])))
            << "bottom " << b << " diff " << i;
      }
    }
    for (int p = 0; p < 2; ++p) {
      const Blob<Dtype>& mine = *fused.blobs()[p];
      const Blob<Dtype>& theirs = *conv.blobs()[p];
      for (int i = 0; i < mine.count(); ++i) {
        EXPECT_NEAR(mine.cpu_diff()[i], theirs.cpu_diff()[i],
                    tolerance * std::max(Dtype(1), std::fabs(theirs.cpu_diff()[i])))
            << "param " << p << " diff " << i;
      }
    }
  }
}

TYPED_TEST(SsnLayerTest, ConcatConvolutionGradient) {
  typedef typename TypeParam::Dtype Dtype;
  Blob<Dtype> first(2, 3, 4, 5), second(2, 2, 4, 5);  // small: checked exhaustively
  FillGaussian(&first);
  FillGaussian(&second);
  vector<Blob<Dtype>*> bottom;
  bottom.push_back(&first);
  bottom.push_back(&second);
  ConcatConvolutionLayer<Dtype> layer(ConcatConvolutionParam(1, 1));
  GradientChecker<Dtype> checker(1e-2, 1e-3);
  // Every bottom, and the weights and bias.
  checker.CheckGradientExhaustive(&layer, bottom, this->top_vec_);
  ExpectNonzeroGradient(&layer, bottom, this->top_vec_, 0);
  ExpectNonzeroGradient(&layer, bottom, this->top_vec_, 1);
}

TYPED_TEST(SsnLayerTest, ConcatConvolutionReLUOutput) {
  typedef typename TypeParam::Dtype Dtype;
  Blob<Dtype> second(2, 5, 7, 9), plain;
  FillGaussian(&second);
  vector<Blob<Dtype>*> bottom;
  bottom.push_back(this->features_);
  bottom.push_back(&second);
  LayerParameter param = ConcatConvolutionParam(1, 1);
  ConcatConvolutionLayer<Dtype> linear(param);
  vector<Blob<Dtype>*> plain_vec(1, &plain);
  linear.SetUp(bottom, plain_vec);
  param.mutable_convolution_output_param()->set_relu(true);
  ConcatConvolutionLayer<Dtype> rectified(param);
  rectified.SetUp(bottom, this->top_vec_);
  for (int b = 0; b < 2; ++b) {
    rectified.blobs()[b]->CopyFrom(*linear.blobs()[b]);
  }
  linear.Forward(bottom, plain_vec);
  rectified.Forward(bottom, this->top_vec_);
  int negative = 0;
  for (int i = 0; i < plain.count(); ++i) {
    const Dtype value = plain.cpu_data()[i];
    negative += value < 0;
    EXPECT_EQ(this->top_->cpu_data()[i], value > 0 ? value : Dtype(0));
  }
  EXPECT_GT(negative, 0);
}

// ---- LossWithoutSoftmax ----

TYPED_TEST(SsnLayerTest, LossWithoutSoftmaxValueAndGradient) {
  typedef typename TypeParam::Dtype Dtype;
  Blob<Dtype> prob(2, 4, 3, 5), labels(2, 1, 3, 5);
  FillUniform(&prob, Dtype(0.2), Dtype(1));
  for (int i = 0; i < labels.count(); ++i) {
    labels.mutable_cpu_data()[i] = i % 5 == 4 ? 255 : i % 4;  // some ignored
  }
  LayerParameter param;
  param.mutable_loss_param()->set_ignore_label(255);
  vector<Blob<Dtype>*> bottom;
  bottom.push_back(&prob);
  bottom.push_back(&labels);
  LossWithoutSoftmaxLayer<Dtype> layer(param);
  layer.SetUp(bottom, this->top_vec_);
  layer.Forward(bottom, this->top_vec_);
  double expected = 0;
  int valid = 0;
  for (int n = 0; n < 2; ++n) {
    for (int p = 0; p < 15; ++p) {
      const int label = labels.cpu_data()[n * 15 + p];
      if (label == 255) continue;
      expected -= std::log(prob.data_at(n, label, p / 5, p % 5));
      ++valid;
    }
  }
  EXPECT_NEAR(this->top_->cpu_data()[0], expected / valid, 1e-5);
  GradientChecker<Dtype> checker(1e-3, 2e-3);
  checker.CheckGradientExhaustive(&layer, bottom, this->top_vec_, 0);
  ExpectNonzeroGradient(&layer, bottom, this->top_vec_, 0);
}

// The normalise option: each position's values x (some below -shift, outside
// the class sum) become p_c = (x_c + shift) / (sum_c max(x_c + shift, 0) +
// sum_shift) before the log; 3 classes, odd sizes, some labels ignored.
TYPED_TEST(SsnLayerTest, LossWithoutSoftmaxNormalizeValueAndGradient) {
  typedef typename TypeParam::Dtype Dtype;
  const int num = 2, classes = 3, height = 3, width = 5, spatial = 15;
  const double shift = 0.125, sum_shift = 0.25;
  Blob<Dtype> values(num, classes, height, width), labels(num, 1, height, width);
  FillUniform(&values, Dtype(-0.5), Dtype(1));
  for (int i = 0; i < labels.count(); ++i) {
    const int label = i % 3;
    labels.mutable_cpu_data()[i] = i % 5 == 4 ? 255 : label;
    // The label's own value stays clear of the clamp (p <= 0).
    Dtype* own = values.mutable_cpu_data() + (i / spatial * classes + label) *
                 spatial + i % spatial;
    *own = std::fabs(*own) + Dtype(0.1);
  }
  LayerParameter param;
  param.mutable_loss_param()->set_ignore_label(255);
  LossWithoutSoftmaxParameter* option =
      param.mutable_loss_without_softmax_param();
  option->set_normalize(true);
  option->set_shift(shift);
  option->set_sum_shift(sum_shift);
  vector<Blob<Dtype>*> bottom;
  bottom.push_back(&values);
  bottom.push_back(&labels);
  LossWithoutSoftmaxLayer<Dtype> layer(param);
  layer.SetUp(bottom, this->top_vec_);
  layer.Forward(bottom, this->top_vec_);
  double expected = 0;
  int valid = 0;
  for (int n = 0; n < num; ++n) {
    for (int p = 0; p < spatial; ++p) {
      const int label = labels.cpu_data()[n * spatial + p];
      if (label == 255) continue;
      double sum = sum_shift;
      for (int c = 0; c < classes; ++c) {
        sum += std::max(0.0, values.data_at(n, c, p / width, p % width) + shift);
      }
      expected -= std::log((values.data_at(n, label, p / width, p % width) +
                            shift) / sum);
      ++valid;
    }
  }
  EXPECT_NEAR(this->top_->cpu_data()[0], expected / valid, 1e-5);
  GradientChecker<Dtype> checker(1e-3, 2e-3);
  checker.CheckGradientExhaustive(&layer, bottom, this->top_vec_, 0);
  ExpectNonzeroGradient(&layer, bottom, this->top_vec_, 0);
}

TYPED_TEST(SsnLayerTest, LossWithoutSoftmaxNormalizeRefusesBadShifts) {
  typedef typename TypeParam::Dtype Dtype;
  Blob<Dtype> values(1, 2, 2, 2), labels(1, 1, 2, 2);
  vector<Blob<Dtype>*> bottom;
  bottom.push_back(&values);
  bottom.push_back(&labels);
  const float bad_sum_shifts[] = {0, -1e-12f, INFINITY};
  for (int i = 0; i < 3; ++i) {
    LayerParameter param;
    param.set_name("loss3");
    param.mutable_loss_without_softmax_param()->set_normalize(true);
    param.mutable_loss_without_softmax_param()->set_sum_shift(bad_sum_shifts[i]);
    LossWithoutSoftmaxLayer<Dtype> layer(param);
    EXPECT_DEATH(layer.SetUp(bottom, this->top_vec_),
                 "'loss3': sum_shift must be positive and finite");
  }
}


// ---- SlicIterations ----

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

TYPED_TEST(SsnLayerTest, SlicIterationsMatchDecomposedForEveryStepCount) {
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
TYPED_TEST(SsnLayerTest, SlicIterationsMatchDecomposedOnEdgeGrids) {
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
TYPED_TEST(SsnLayerTest, SlicIterationsMatchDecomposedOnLargerImages) {
  typedef typename TypeParam::Dtype Dtype;
  Blob<Dtype> features(2, 6, 97, 131), spixels(2, 6, 1, 63), cells(2, 1, 97, 131);
  FillGaussian(&features, Dtype(3));
  FillGaussian(&spixels, Dtype(3));
  FillGridCells(&cells, 7, 9);
  LayerParameter param = this->GridParam(7, 9);
  param.mutable_spixel_feature2_param()->set_scale_value(-1);
  EXPECT_GT(ExpectSlicMatchesDecomposed(param, 5, &features, &spixels, &cells), 40);
}

TYPED_TEST(SsnLayerTest, SlicIterationsOptionalTopsAndReshape) {
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
TYPED_TEST(SsnLayerTest, SlicIterationsRefuseBackward) {
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

#ifndef CPU_ONLY
// ---- CPU and GPU agree ----
//
// Each test runs one layer forward and backward on the same random inputs,
// first in CPU mode and then, as a fresh layer, in GPU mode, and expects the
// tops and the bottom diffs to agree. Inputs are larger than above so that
// kernels span several blocks and rows hold several runs of equal cell.

template <typename Dtype>
class SsnCpuGpuTest : public GPUDeviceTest<Dtype> {
 protected:
  SsnCpuGpuTest()
      : features_(2, 5, 37, 53), spixels_(2, 5, 1, 24), assoc_(2, 9, 37, 53),
        cells_(2, 1, 37, 53) {
    Caffe::set_random_seed(1702);
    FillGaussian(&features_);
    FillGaussian(&spixels_);
    FillUniform(&assoc_, Dtype(0), Dtype(1));
    FillGridCells(&cells_, 4, 6);
  }

  // Largest |a - b| / max(1, |a|) over two arrays.
  static double MaxError(int count, const Dtype* a, const Dtype* b) {
    double worst = 0;
    for (int i = 0; i < count; ++i) {
      const double scale = std::max(1.0, std::fabs(static_cast<double>(a[i])));
      worst = std::max(worst, std::fabs(static_cast<double>(a[i]) - b[i]) /
                                  scale);
    }
    return worst;
  }

  // Runs `param` on `bottom` with `num_tops` tops on the CPU and on the GPU,
  // backpropagating a random top diff into the bottoms marked in `backward`.
  void ExpectAgree(const LayerParameter& param,
                   const vector<Blob<Dtype>*>& bottom, int num_tops,
                   const vector<bool>& backward) {
    const double tolerance = sizeof(Dtype) == sizeof(float) ? 2e-4 : 1e-9;
    vector<vector<Dtype> > tops[2], diffs[2];
    vector<Blob<Dtype>*> top_diffs;
    for (int device = 0; device < 2; ++device) {
      Caffe::set_mode(device == 0 ? Caffe::CPU : Caffe::GPU);
      Caffe::set_random_seed(1703);  // the same weights, for layers with some
      shared_ptr<Layer<Dtype> > layer =
          LayerRegistry<Dtype>::CreateLayer(param);
      vector<Blob<Dtype>*> top;
      for (int t = 0; t < num_tops; ++t) top.push_back(new Blob<Dtype>());
      layer->SetUp(bottom, top);
      layer->Forward(bottom, top);
      for (int t = 0; t < num_tops; ++t) {
        tops[device].push_back(vector<Dtype>(
            top[t]->cpu_data(), top[t]->cpu_data() + top[t]->count()));
        if (device == 0) {
          top_diffs.push_back(new Blob<Dtype>(top[t]->shape()));
          FillGaussian(top_diffs[t]);
        }
        caffe_copy(top[t]->count(), top_diffs[t]->cpu_data(),
                   top[t]->mutable_cpu_diff());
      }
      for (int b = 0; b < bottom.size(); ++b) {
        // A sentinel: every entry must be overwritten by the backward pass.
        caffe_set(bottom[b]->count(), Dtype(12345),
                  bottom[b]->mutable_cpu_diff());
      }
      layer->Backward(top, backward, bottom);
      for (int b = 0; b < bottom.size(); ++b) {
        if (!backward[b]) continue;
        diffs[device].push_back(vector<Dtype>(
            bottom[b]->cpu_diff(), bottom[b]->cpu_diff() + bottom[b]->count()));
      }
      for (int p = 0; p < layer->blobs().size(); ++p) {
        const Blob<Dtype>& blob = *layer->blobs()[p];
        diffs[device].push_back(vector<Dtype>(
            blob.cpu_diff(), blob.cpu_diff() + blob.count()));
      }
      for (int t = 0; t < num_tops; ++t) delete top[t];
    }
    for (int t = 0; t < num_tops; ++t) {
      ASSERT_EQ(tops[0][t].size(), tops[1][t].size());
      EXPECT_LE(MaxError(tops[0][t].size(), &tops[0][t][0], &tops[1][t][0]),
                tolerance) << param.type() << " top " << t;
      delete top_diffs[t];
    }
    for (int i = 0; i < diffs[0].size(); ++i) {
      EXPECT_LE(MaxError(diffs[0][i].size(), &diffs[0][i][0], &diffs[1][i][0]),
                tolerance) << param.type() << " bottom or param diff " << i;
    }
  }

  Blob<Dtype> features_;  // 2 x 5 x 37 x 53
  Blob<Dtype> spixels_;   // 2 x 5 x 1 x 24 (4 x 6 grid)
  Blob<Dtype> assoc_;     // 2 x 9 x 37 x 53
  Blob<Dtype> cells_;     // 2 x 1 x 37 x 53 initial cells of a 4 x 6 grid
};

TYPED_TEST_CASE(SsnCpuGpuTest, TestDtypes);

TYPED_TEST(SsnCpuGpuTest, PixelFeature) {
  typedef TypeParam Dtype;
  const PixelFeatureParameter_Feature types[] = {
      PixelFeatureParameter_Feature_POSITION,
      PixelFeatureParameter_Feature_POSITION_AND_RGB,
      PixelFeatureParameter_Feature_RGB_AND_POSITION,
      PixelFeatureParameter_Feature_RGB};
  for (int i = 0; i < 4; ++i) {
    LayerParameter param;
    param.set_type("PixelFeature");
    PixelFeatureParameter* pf = param.mutable_pixel_feature_param();
    pf->set_type(types[i]);
    pf->set_pos_scale(0.3);
    pf->set_color_scale(0.7);
    pf->set_offset_h(1.5);
    pf->set_offset_w(-2);
    this->ExpectAgree(param, vector<Blob<Dtype>*>(1, &this->features_), 1,
                      vector<bool>(1, true));
  }
}

TYPED_TEST(SsnCpuGpuTest, SpixelFeatureBothTopsWithIgnored) {
  typedef TypeParam Dtype;
  Blob<Dtype> ids;
  ids.CopyFrom(this->cells_, false, true);
  for (int i = 0; i < ids.count(); i += 7) ids.mutable_cpu_data()[i] = -10;
  const SpixelFeatureParameter_Feature types[] = {
      SpixelFeatureParameter_Feature_AVGXY,
      SpixelFeatureParameter_Feature_AVGRGBXYRGBXY};
  for (int i = 0; i < 2; ++i) {
    LayerParameter param;
    param.set_type("SpixelFeature");
    SpixelFeatureParameter* sf = param.mutable_spixel_feature_param();
    sf->set_type(types[i]);
    sf->set_max_spixels(25);  // one more than the grid: an empty superpixel
    sf->set_ignore_idx_value(-10);
    sf->set_ignore_feature_value(255);
    sf->set_rgb_scale(0.5);
    sf->set_xy_scale(0.25);
    sf->set_rgbxy_rgb_scale(2);
    vector<Blob<Dtype>*> bottom;
    bottom.push_back(&this->features_);
    bottom.push_back(&ids);
    vector<bool> backward(2, false);
    backward[0] = true;
    this->ExpectAgree(param, bottom, 2, backward);
  }
}

TYPED_TEST(SsnCpuGpuTest, Passoc) {
  typedef TypeParam Dtype;
  LayerParameter param;
  param.set_type("Passoc");
  param.mutable_spixel_feature2_param()->set_num_spixels_h(4);
  param.mutable_spixel_feature2_param()->set_num_spixels_w(6);
  param.mutable_spixel_feature2_param()->set_scale_value(-1);
  param.mutable_spixel_feature2_param()->set_invalid_distance(10000);
  vector<Blob<Dtype>*> bottom;
  bottom.push_back(&this->features_);
  bottom.push_back(&this->spixels_);
  bottom.push_back(&this->cells_);
  vector<bool> backward(3, true);
  backward[2] = false;
  this->ExpectAgree(param, bottom, 1, backward);
}

TYPED_TEST(SsnCpuGpuTest, SpixelFeature2) {
  typedef TypeParam Dtype;
  LayerParameter param;
  param.set_type("SpixelFeature2");
  param.mutable_spixel_feature2_param()->set_num_spixels_h(4);
  param.mutable_spixel_feature2_param()->set_num_spixels_w(6);
  // Dead superpixels: in image 0, no association in rows 0-18 (grid rows 0
  // and 1), so the cells of grid row 0 get no weight at all.
  for (int c = 0; c < 9; ++c) {
    caffe_set(19 * 53, Dtype(0), this->assoc_.mutable_cpu_data() + c * 37 * 53);
  }
  vector<Blob<Dtype>*> bottom;
  bottom.push_back(&this->features_);
  bottom.push_back(&this->assoc_);
  bottom.push_back(&this->cells_);
  vector<bool> backward(3, true);
  backward[2] = false;
  this->ExpectAgree(param, bottom, 1, backward);
}

TYPED_TEST(SsnCpuGpuTest, SlicIterations) {
  typedef TypeParam Dtype;
  LayerParameter param;
  param.set_type("SlicIterations");
  param.mutable_spixel_feature2_param()->set_num_spixels_h(4);
  param.mutable_spixel_feature2_param()->set_num_spixels_w(6);
  param.mutable_spixel_feature2_param()->set_scale_value(-1);
  param.mutable_slic_iterations_param()->set_num_steps(4);
  vector<Blob<Dtype>*> bottom;
  bottom.push_back(&this->features_);
  bottom.push_back(&this->spixels_);
  bottom.push_back(&this->cells_);
  // Forward only: labels, S^(T-1) and Q_T.
  this->ExpectAgree(param, bottom, 3, vector<bool>(3, false));
}

TYPED_TEST(SsnCpuGpuTest, RelToAbsIndex) {
  typedef TypeParam Dtype;
  Blob<Dtype> relative(this->cells_.shape());
  for (int i = 0; i < relative.count(); ++i) {
    relative.mutable_cpu_data()[i] = (i * 7 + i / 53) % 9;
  }
  LayerParameter param;
  param.set_type("RelToAbsIndex");
  param.mutable_rel_to_abs_index_param()->set_num_spixels_h(4);
  param.mutable_rel_to_abs_index_param()->set_num_spixels_w(6);
  vector<Blob<Dtype>*> bottom;
  bottom.push_back(&relative);
  bottom.push_back(&this->cells_);
  this->ExpectAgree(param, bottom, 1, vector<bool>(2, true));
}

TYPED_TEST(SsnCpuGpuTest, SmearWithIgnored) {
  typedef TypeParam Dtype;
  Blob<Dtype> ids;
  ids.CopyFrom(this->cells_, false, true);
  for (int i = 0; i < ids.count(); i += 5) ids.mutable_cpu_data()[i] = -1;
  LayerParameter param;
  param.set_type("Smear");
  vector<Blob<Dtype>*> bottom;
  bottom.push_back(&this->spixels_);
  bottom.push_back(&ids);
  vector<bool> backward(2, false);
  backward[0] = true;
  this->ExpectAgree(param, bottom, 1, backward);
}

TYPED_TEST(SsnCpuGpuTest, SpixelToPixel) {
  typedef TypeParam Dtype;
  LayerParameter param;
  param.set_type("SpixelToPixel");
  param.mutable_spixel_feature2_param()->set_num_spixels_h(4);
  param.mutable_spixel_feature2_param()->set_num_spixels_w(6);
  vector<Blob<Dtype>*> bottom;
  bottom.push_back(&this->spixels_);
  bottom.push_back(&this->assoc_);
  bottom.push_back(&this->cells_);
  vector<bool> backward(3, true);
  backward[2] = false;
  this->ExpectAgree(param, bottom, 1, backward);
}

TYPED_TEST(SsnCpuGpuTest, Interp) {
  typedef TypeParam Dtype;
  for (int i = 0; i < 4; ++i) {
    LayerParameter param;
    param.set_type("Interp");
    InterpParameter* ip = param.mutable_interp_param();
    switch (i) {
      case 0: ip->set_zoom_factor(3); break;
      case 1: ip->set_shrink_factor(4); break;
      case 2: ip->set_height(20); ip->set_width(81); ip->set_pad_beg(-2);
              ip->set_pad_end(-1); break;
      default: ip->set_shrink_factor(2); ip->set_zoom_factor(3);
    }
    this->ExpectAgree(param, vector<Blob<Dtype>*>(1, &this->features_), 1,
                      vector<bool>(1, true));
  }
}

TYPED_TEST(SsnCpuGpuTest, InterpWithReference) {
  typedef TypeParam Dtype;
  LayerParameter param;
  param.set_type("Interp");
  param.mutable_interp_param()->set_zoom_factor(3);  // 37 x 53 -> 109 x 157
  Blob<Dtype> reference(1, 1, 100, 157);
  vector<Blob<Dtype>*> bottom(1, &this->features_);
  bottom.push_back(&reference);
  vector<bool> backward(2, true);
  backward[1] = false;
  this->ExpectAgree(param, bottom, 1, backward);
}

TYPED_TEST(SsnCpuGpuTest, ConcatConvolution) {
  typedef TypeParam Dtype;
  Blob<Dtype> wide(2, 64, 37, 53), narrow(2, 3, 37, 53);
  FillGaussian(&wide);
  FillGaussian(&narrow);
  LayerParameter param = ConcatConvolutionParam(1, 1);
  param.mutable_convolution_param()->set_num_output(15);
  vector<Blob<Dtype>*> bottom;
  bottom.push_back(&this->features_);
  bottom.push_back(&wide);
  bottom.push_back(&narrow);
  this->ExpectAgree(param, bottom, 1, vector<bool>(3, true));
}

TYPED_TEST(SsnCpuGpuTest, LossWithoutSoftmax) {
  typedef TypeParam Dtype;
  Blob<Dtype> prob(2, 6, 37, 53), labels(2, 1, 37, 53);
  FillUniform(&prob, Dtype(0), Dtype(1));
  prob.mutable_cpu_data()[0] = 0;  // clamped to FLT_MIN
  for (int i = 0; i < labels.count(); ++i) {
    labels.mutable_cpu_data()[i] = i % 11 == 3 ? 255 : (i * 5) % 6;
  }
  const LossParameter_NormalizationMode modes[] = {
      LossParameter_NormalizationMode_FULL,
      LossParameter_NormalizationMode_VALID,
      LossParameter_NormalizationMode_BATCH_SIZE,
      LossParameter_NormalizationMode_NONE};
  for (int i = 0; i < 4; ++i) {
    LayerParameter param;
    param.set_type("LossWithoutSoftmax");
    param.mutable_loss_param()->set_ignore_label(255);
    param.mutable_loss_param()->set_normalization(modes[i]);
    vector<Blob<Dtype>*> bottom;
    bottom.push_back(&prob);
    bottom.push_back(&labels);
    vector<bool> backward(2, false);
    backward[0] = true;
    this->ExpectAgree(param, bottom, 1, backward);
  }
}

TYPED_TEST(SsnCpuGpuTest, LossWithoutSoftmaxNormalize) {
  typedef TypeParam Dtype;
  Blob<Dtype> values(2, 6, 37, 53), labels(2, 1, 37, 53);
  FillGaussian(&values);
  Dtype* data = values.mutable_cpu_data();
  for (int i = 0; i < values.count(); ++i) data[i] = std::max(data[i], Dtype(0));
  for (int i = 0; i < labels.count(); ++i) {
    labels.mutable_cpu_data()[i] = i % 11 == 3 ? 255 : (i * 5) % 6;
  }
  const LossParameter_NormalizationMode modes[] = {
      LossParameter_NormalizationMode_FULL,
      LossParameter_NormalizationMode_VALID};
  for (int i = 0; i < 2; ++i) {
    LayerParameter param;
    param.set_type("LossWithoutSoftmax");
    param.mutable_loss_param()->set_ignore_label(255);
    param.mutable_loss_param()->set_normalization(modes[i]);
    param.mutable_loss_without_softmax_param()->set_normalize(true);
    vector<Blob<Dtype>*> bottom;
    bottom.push_back(&values);
    bottom.push_back(&labels);
    vector<bool> backward(2, false);
    backward[0] = true;
    this->ExpectAgree(param, bottom, 1, backward);
  }
}
#endif  // CPU_ONLY

// The eight-lane exp of SlicIterations and the scalar one of Softmax give the
// same bits on every lane, over a sweep of the floats in [-100, 0].
TEST(SsnVectorExpTest, LanesMatchTheScalarExp) {
  int checked = 0;
  for (uint32_t bits = 0x80000000u; bits <= 0xC2C80000u; bits += 4093) {
    float x;
    std::memcpy(&x, &bits, sizeof(x));
    const ssn::Float8 lanes = {x, -x * 0.f, x * 0.5f, x, x * 0.25f, x, x * 0.75f, x};
    const ssn::Float8 y = ssn::exp_nonpositive(lanes);
    for (int lane = 0; lane < 8; ++lane) {
      const float expected = ssn::exp_nonpositive(static_cast<float>(lanes[lane]));
      ASSERT_EQ(0, std::memcmp(&expected, &y[lane], sizeof(float)))
          << "exp(" << lanes[lane] << "): lane " << lane << " gives " << y[lane]
          << ", the scalar " << expected;
    }
    ++checked;
  }
  EXPECT_GT(checked, 100000);
}

}  // namespace caffe

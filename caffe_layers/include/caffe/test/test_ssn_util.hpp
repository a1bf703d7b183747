// Shared by the SSN layers' C++ tests (test_<layer>_layer.cpp): blob fillers,
// a check that a gradient is not all zero, and the fixture SsnLayerTest whose
// small random blobs (odd sizes, batch 2) the layer tests derive from.
#ifndef CAFFE_TEST_TEST_SSN_UTIL_HPP_
#define CAFFE_TEST_TEST_SSN_UTIL_HPP_

#include <vector>

#include "gtest/gtest.h"

#include "caffe/blob.hpp"
#include "caffe/common.hpp"
#include "caffe/filler.hpp"
#include "caffe/layer.hpp"
#include "caffe/test/test_caffe_main.hpp"
#include "caffe/util/math_functions.hpp"

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

// The 1 x 2 x 4 x 6 features of the hand-worked test vectors: channel 0 holds
// the pixel's index p, channel 1 holds 2 * (p % 5).
template <typename Dtype>
void FillWorkedFeatures(Blob<Dtype>* features) {
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

// The common inputs: pixel features, superpixel features of a 2 x 3 grid,
// associations and the grid's initial cells, all random but the cells.
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

}  // namespace caffe

#endif  // CAFFE_TEST_TEST_SSN_UTIL_HPP_

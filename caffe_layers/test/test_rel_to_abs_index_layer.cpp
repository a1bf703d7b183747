// C++ tests of the RelToAbsIndex layer (docs/LAYERS.md#reltoabsindex).
#include <vector>

#include "gtest/gtest.h"

#include "caffe/layers/rel_to_abs_index_layer.hpp"
#include "caffe/test/test_ssn_util.hpp"

namespace caffe {

template <typename TypeParam>
class RelToAbsIndexLayerTest : public SsnLayerTest<TypeParam> {};

TYPED_TEST_CASE(RelToAbsIndexLayerTest, TestDtypesAndDevices);

TYPED_TEST(RelToAbsIndexLayerTest, WorkedVector) {
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

TYPED_TEST(RelToAbsIndexLayerTest, ClampsInvalidNeighbours) {
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

}  // namespace caffe

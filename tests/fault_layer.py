"""A Caffe Python layer for the training tests: raises on its Nth forward (N: its
python_param's param_str)."""
import caffe


class FaultLayer(caffe.Layer):
    """Raises RuntimeError on forward number ``int(param_str)``; otherwise a 1-value top."""

    def setup(self, bottom, top):
        self.calls = 0
        self.fail = int(self.param_str)

    def reshape(self, bottom, top):
        top[0].reshape(1)

    def forward(self, bottom, top):
        self.calls += 1
        if self.calls == self.fail:
            raise RuntimeError(f"a fault on forward {self.fail}")

    def backward(self, top, propagate_down, bottom):
        pass

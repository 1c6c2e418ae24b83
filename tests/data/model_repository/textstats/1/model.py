"""Second test model: the byte length of TEXT and the sum of WEIGHTS (any length)."""

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            text = pb_utils.get_input_tensor_by_name(request, "TEXT").as_numpy()
            weights = pb_utils.get_input_tensor_by_name(request, "WEIGHTS").as_numpy()
            length = np.array([sum(len(t) for t in text.reshape(-1))], dtype=np.int32)
            total = np.array([weights.sum()], dtype=np.float32)
            responses.append(pb_utils.InferenceResponse(
                [pb_utils.Tensor("LENGTH", length), pb_utils.Tensor("TOTAL", total)]))
        return responses

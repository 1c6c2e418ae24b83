"""Running the tritonserver binary that ships in the nvidia-pytriton wheel, and its model repository."""

"""neuroscale: Kubernetes operator for generative-AI inference on AWS Neuron."""
__version__ = "0.1.0"

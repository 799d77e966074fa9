"""API types (v1alpha1) and the CRDs generated from them."""

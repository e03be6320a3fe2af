"""imgsearch: choose an image-text embedding model from real search performance on your photos."""

__version__ = "0.1.0"

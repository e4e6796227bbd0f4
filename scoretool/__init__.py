"""scoretool: restore images with score priors."""

__version__ = "0.1.0"

"""Names shared by the Scipion layer."""

DEEPFINDER_DEVICE = "DEEPFINDER_DEVICE"

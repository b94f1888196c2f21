"""torchvision model families (filled in below)."""
